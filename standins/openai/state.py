"""The fake OpenAI's state, shared by every endpoint: recorded requests, conversations, stored
responses, containers, models, context windows, the scripts, fault injections and in-flight counts."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiohttp import web

from .file_search import FakeVectorStore
from .items import echo_chat, echo_response
from .output import ResponseRun
from .records import FakeConversation, RecordedRequest, StoredContainerFile, StoredFile, Truncation
from .script import Drop, HttpError, Script
from .tokens import Json
from .wire import BadRequest

DEFAULT_MODELS = (
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-image-2",
    "gpt-image-1.5",
    "gpt-image-1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "omni-moderation-latest",
)

RETIRED_MODELS = frozenset({"dall-e-2", "dall-e-3", "gpt-image-1"})


class OpenAIState:
    """What the endpoints read and change; ``FakeOpenAI`` adds the server around it."""

    def __init__(self, *, models: tuple[str, ...] = DEFAULT_MODELS) -> None:
        self.requests: list[RecordedRequest] = []
        self.conversations: dict[str, FakeConversation] = {}
        self.stored_responses: dict[str, Json] = {}
        self.containers: dict[str, dict[str, StoredContainerFile]] = {}
        self.files: dict[str, StoredFile] = {}
        """Files uploaded through `POST /v1/files`, by id (deleted ones are gone)."""
        self.max_file_bytes = 512 * 1024 * 1024
        """The Files API's per-file limit (512 MB); a test lowers it to see the refusal."""
        self.vector_stores: dict[str, FakeVectorStore] = {}
        """Vector stores by id, each with its attached files (`POST /v1/vector_stores`)."""
        self.unprocessable_files: dict[str, str] = {}
        """Filename -> the error a vector store gives when it processes a file of that name."""
        self.models: list[str] = list(models)
        self.retired_models: set[str] = set(RETIRED_MODELS)
        self.invalid_api_keys: set[str] = {"invalid"}
        self.context_windows: dict[str, int] = {}
        """Per model: its context window in tokens (`estimate_context_tokens`); unnamed: unlimited."""
        self.chat_dialect = "openai"
        """How /v1/chat/completions behaves where servers differ: "openai", or "llama.cpp" as
        llama.cpp's servers do (the whole tool name and id in every streamed tool-call chunk,
        HTTP 500 for an assistant message with `"content": null`, no usage in streams), or
        "llama-cpp-python" (the same, and a streamed request over its `context_windows` entry answered
        by an empty 200 stream, where llama.cpp's own server refuses it with a 400), or "vllm"
        (each model's `context_windows` entry as `max_model_len` in the model list)."""
        self.honours_truncation = True
        """False: a server without `truncation: "auto"`; every request over the window is refused."""
        self.truncations: list[Truncation] = []

        self.responses = Script(echo_response)
        self.chat = Script(echo_chat)
        self.images = Script(lambda body: None)
        self.embeddings = Script(lambda body: None)
        self.moderations = Script(lambda body: None)
        self._interrupts: list[tuple[str, HttpError | Drop]] = []

        self.inflight_per_conversation: dict[str, int] = defaultdict(int)
        self.max_inflight_per_conversation = 0
        self.inflight_requests = 0
        self.max_inflight_requests = 0
        self.server_errors: list[BaseException] = []

        self._contexts: dict[str, list[Json]] = {}
        self._running: dict[str, ResponseRun] = {}
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    def _check_model(self, body: Json, *, required: bool = True) -> str:
        model = body.get("model")
        if not model:
            if required:
                raise BadRequest(
                    "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
                )
            return ""
        if not isinstance(model, str):
            raise BadRequest("Invalid type for 'model': expected a string.", param="model")
        if model in self.retired_models:
            raise BadRequest(
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                status=404,
            )
        return model

    def _conversation(self, conversation_id: str) -> FakeConversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise BadRequest(
                f"Conversation with id '{conversation_id}' not found.", param="conversation", status=404
            )
        return conversation
