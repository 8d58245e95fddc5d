"""A stand-in OpenAI server for tests and benchmarks: a real aiohttp app on 127.0.0.1 that the real
`openai` SDK talks to.

Pointing `AsyncOpenAI(base_url=fake.base_url)` at it means every byte the bot receives is parsed by the
SDK's own code, so a shape mistake here or in the bot fails the way it would against OpenAI. It is
stateful (conversations, stored responses, container files), scriptable per endpoint (FIFO queues of
steps plus a default responder) and records every request for assertions.

A model can be given a context window (`fake.context_windows["gpt-5.5"] = 2000`, in the fake's
tokens, see `estimate_context_tokens`): a request over it is refused with OpenAI's 400
`context_length_exceeded`, unless a Responses request asks for `truncation: "auto"`, which drops the
conversation's oldest items from what the model sees (they stay in the conversation), as OpenAI does.

    async with FakeOpenAI() as fake:
        fake.responses.push(Reply("hello"), HttpError(429, headers={"retry-after": "0.01"}))
        client = fake.client()
        ...
        await fake.wait_for_requests("/v1/responses", 2)

Layout: ``script`` (what a test scripts: ``Reply``, ``FunctionCall``, ``HttpError``, ``Script``...),
``state`` and ``server`` (``FakeOpenAI``: recording, routing, faults), one module per API
(``conversations``, ``responses``, ``chat``, ``media``, ``files``, ``vector_stores``, ``embeddings``,
``moderation``),
and what they share: ``items`` (input normalisation), ``output`` (a Reply as output items and stream
events), ``sse``, ``tokens`` and ``context_window``, ``wire`` (JSON and errors in OpenAI's shape).
"""

from __future__ import annotations

from .embeddings import cosine_similarity, fake_embedding
from .items import echo_chat, echo_response
from .records import FakeConversation, RecordedRequest, StoredContainerFile, StoredFile, Truncation
from .script import (
    MODERATION_CATEGORIES,
    CodeInterpreterCall,
    ContainerFile,
    Drop,
    FileSearchCall,
    FunctionCall,
    HttpError,
    ImageGenerationCall,
    ImageReply,
    ModerationResult,
    Reply,
    Responder,
    ResponseStatus,
    Script,
    Step,
    UrlCitation,
    WebSearchCall,
)
from .server import FakeOpenAI
from .tokens import estimate_context_tokens

__all__ = [
    "MODERATION_CATEGORIES",
    "CodeInterpreterCall",
    "ContainerFile",
    "Drop",
    "FakeConversation",
    "FakeOpenAI",
    "FileSearchCall",
    "FunctionCall",
    "HttpError",
    "ImageGenerationCall",
    "ImageReply",
    "ModerationResult",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ResponseStatus",
    "Script",
    "Step",
    "StoredContainerFile",
    "StoredFile",
    "Truncation",
    "UrlCitation",
    "WebSearchCall",
    "cosine_similarity",
    "echo_chat",
    "echo_response",
    "estimate_context_tokens",
    "fake_embedding",
]
