"""A stand-in OpenAI server for tests: a real aiohttp app on 127.0.0.1 that the real `openai` SDK talks to.

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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import inspect
import itertools
import json
import math
import re
import secrets
import struct
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlparse

from aiohttp import web

from .png import encode_png

if TYPE_CHECKING:
    import openai

Json: TypeAlias = dict[str, Any]

__all__ = [
    "MODERATION_CATEGORIES",
    "CodeInterpreterCall",
    "ContainerFile",
    "Drop",
    "FakeConversation",
    "FakeOpenAI",
    "FunctionCall",
    "HttpError",
    "ImageReply",
    "ModerationResult",
    "RecordedRequest",
    "Reply",
    "ResponseStatus",
    "Script",
    "StoredContainerFile",
    "Truncation",
    "UrlCitation",
    "WebSearchCall",
    "cosine_similarity",
    "echo_chat",
    "echo_response",
    "estimate_context_tokens",
    "fake_embedding",
]

# --------------------------------------------------------------------------------------------------
# Steps: what a scripted endpoint does with the next request
# --------------------------------------------------------------------------------------------------


@dataclass
class FunctionCall:
    """A function call the model asks for; `arguments` may be a raw (even invalid) JSON string."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None

    def arguments_json(self) -> str:
        """The arguments as the API sends them: a JSON string."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass
class UrlCitation:
    """A web source; cited over `anchor` if it occurs in the text, else a markdown link is appended."""

    url: str
    title: str
    anchor: str | None = None


@dataclass
class WebSearchCall:
    """A hosted web search (Responses only) whose citations become `url_citation` annotations."""

    query: str
    citations: list[UrlCitation] = field(default_factory=list)


@dataclass
class ContainerFile:
    """A file the code interpreter produced; served under /v1/containers/{cid}/files/{fid}/content."""

    filename: str
    data: bytes


@dataclass
class CodeInterpreterCall:
    """A hosted code-interpreter run (Responses only).

    `files` and `images` are stored in the container and cited with `container_file_citation`
    annotations; `images` also appear as `image` outputs (data URLs) when the request asks for
    `include=["code_interpreter_call.outputs"]`, as do the `logs`.
    """

    code: str
    logs: str = ""
    files: list[ContainerFile] = field(default_factory=list)
    images: list[ContainerFile] = field(default_factory=list)
    container_id: str | None = None


HostedCall: TypeAlias = CodeInterpreterCall | WebSearchCall
ResponseStatus: TypeAlias = Literal["completed", "failed", "incomplete", "cancelled"]


@dataclass
class Reply:
    """A model answer, for Responses and Chat Completions alike.

    `deltas`: number of text deltas when streaming (default: one per word). `calls`: function calls
    (several = parallel calls). `status`: failed/incomplete/cancelled end the response that way
    (Chat maps incomplete to finish_reason length/content_filter and failed/cancelled to an error).
    `usage`: (input, output) tokens, or None for an estimate. `delay_s`: before the headers;
    `delta_delay_s`: between stream events, or (`pace="deltas"`) before each text delta only, so
    `deltas=40, delta_delay_s=0.1, pace="deltas"` is 40 deltas over 4 s and the stream ends with the
    last one. `cut_after`: abort the connection after that many stream events. `malformed`: an
    invalid JSON body, or a garbage SSE data line after two events.
    `annotations`: extra raw annotation dicts for the output text.
    """

    text: str = ""
    _: KW_ONLY
    deltas: int | None = None
    calls: list[FunctionCall] = field(default_factory=list)
    refusal: str | None = None
    status: ResponseStatus = "completed"
    incomplete_reason: Literal["max_output_tokens", "content_filter"] = "max_output_tokens"
    error_code: str = "server_error"
    error_message: str = "The model produced an error while generating the response."
    usage: tuple[int, int] | None = None
    delay_s: float = 0.0
    delta_delay_s: float = 0.0
    pace: Literal["events", "deltas"] = "events"
    cut_after: int | None = None
    malformed: bool = False
    hosted: list[HostedCall] = field(default_factory=list)
    annotations: list[Json] = field(default_factory=list)


@dataclass
class HttpError:
    """An HTTP error in OpenAI's error shape; `headers` e.g. {"retry-after": "0.01"} drive SDK retries."""

    status: int
    message: str = "The fake server was told to fail this request."
    _: KW_ONLY
    code: str | None = None
    type: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Drop:
    """Close the connection without any response (the SDK sees a connection error and retries)."""

    delay_s: float = 0.0


@dataclass
class ImageReply:
    """Override the generated images: colour, pixel size (e.g. tiny for fast tests), delay."""

    rgb: tuple[int, int, int] | None = None
    size: tuple[int, int] | None = None
    delay_s: float = 0.0


MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_IMAGE_MODERATION_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)


@dataclass
class ModerationResult:
    """One moderation verdict; a step applies it to every input of the request (or return a list)."""

    flagged_categories: list[str] = field(default_factory=list)
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.flagged_categories) - set(MODERATION_CATEGORIES)
        if unknown:
            raise ValueError(f"unknown moderation categories: {sorted(unknown)}")


Step: TypeAlias = Reply | HttpError | Drop | ImageReply | ModerationResult | list[ModerationResult] | None
Responder: TypeAlias = Callable[[Json], "Step | Awaitable[Step]"]


class Script:
    """A FIFO of steps (or responders) for one endpoint, with a `default` responder when it is empty.

    `None` from a responder means "the endpoint's normal computed answer" (images, embeddings,
    moderations).
    """

    def __init__(self, default: Responder) -> None:
        self.queue: deque[Step | Responder] = deque()
        self.default: Responder = default

    def push(self, *steps: Step | Responder) -> None:
        """Queue steps; each request takes the next one."""
        self.queue.extend(steps)

    def clear(self) -> None:
        """Forget queued steps (the default responder stays)."""
        self.queue.clear()

    def __len__(self) -> int:
        return len(self.queue)

    async def next_step(self, body: Json) -> Step:
        entry = self.queue.popleft() if self.queue else self.default
        if callable(entry):
            result = entry(body)
            if inspect.isawaitable(result):
                result = await result
            return result
        return entry


# --------------------------------------------------------------------------------------------------
# Recorded state
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it (`time` is time.monotonic()).

    `status` is the HTTP status once the answer is complete; it stays None while the request is in
    progress and when the connection was dropped or the stream cut. `finished_at` (time.monotonic())
    is when the handler was done: for a stream, just after its last byte was written.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    time: float
    status: int | None = None
    finished_at: float | None = None


@dataclass
class FakeConversation:
    """A conversation's state, for assertions: its items in order and its metadata."""

    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[Json] = field(default_factory=list)

    def as_json(self) -> Json:
        """The API's Conversation object."""
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }

    def texts(self, role: str | None = None) -> list[str]:
        """Text of each message item (optionally of one role), parts joined."""
        return [
            _message_text(item)
            for item in self.items
            if item.get("type") == "message" and (role is None or item.get("role") == role)
        ]

    def of_type(self, item_type: str) -> list[Json]:
        """Items of one type, e.g. "function_call_output"."""
        return [item for item in self.items if item.get("type") == item_type]


@dataclass(frozen=True)
class Truncation:
    """A Responses request that `truncation: "auto"` made fit: the model saw only the newest items."""

    model: str
    conversation_id: str | None
    dropped_items: int
    kept_items: int


@dataclass
class StoredContainerFile:
    """A file held in a fake code-interpreter container."""

    id: str
    container_id: str
    filename: str
    data: bytes
    created_at: int

    def as_json(self) -> Json:
        """The API's container file object."""
        return {
            "id": self.id,
            "object": "container.file",
            "bytes": len(self.data),
            "container_id": self.container_id,
            "created_at": self.created_at,
            "path": f"/mnt/data/{self.filename}",
            "source": "assistant",
        }


# --------------------------------------------------------------------------------------------------
# Pure helpers: ids, tokens, embeddings
# --------------------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


_TOKEN_COUNT_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"[a-z0-9]+")
_EMBEDDING_DEFAULT_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def _count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(_TOKEN_COUNT_RE.findall(text))


ITEM_OVERHEAD_TOKENS = 4
IMAGE_INPUT_TOKENS = 85


def _item_tokens(item: Json) -> int:
    """Tokens of one Responses item or Chat Completions message (text, call arguments, outputs)."""
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        content = item.get("content")
        images = sum(
            1
            for part in (content if isinstance(content, list) else [])
            if isinstance(part, dict) and part.get("type") in ("input_image", "image_url")
        )
        calls = "".join(
            f"{call['function'].get('name', '')} {call['function'].get('arguments', '')}"
            for call in item.get("tool_calls") or []
            if isinstance(call, dict) and isinstance(call.get("function"), dict)
        )
        spoken = _count_tokens(_message_text(item) + " " + calls)
        return ITEM_OVERHEAD_TOKENS + spoken + images * IMAGE_INPUT_TOKENS
    if kind == "function_call":
        return ITEM_OVERHEAD_TOKENS + _count_tokens(f"{item.get('name', '')} {item.get('arguments', '')}")
    if kind == "function_call_output":
        output = item.get("output")
        return ITEM_OVERHEAD_TOKENS + _count_tokens(output if isinstance(output, str) else json.dumps(output))
    return ITEM_OVERHEAD_TOKENS + _count_tokens(json.dumps(item))


def estimate_context_tokens(items: list[Json], instructions: Any = None, tools: Any = None) -> int:
    """What the fake counts against a context window: the items (or chat messages), the instructions
    and the tool definitions, each a few tokens of overhead plus its words and punctuation marks."""
    total = sum(_item_tokens(item) for item in items)
    if isinstance(instructions, str):
        total += _count_tokens(instructions)
    if tools:
        total += _count_tokens(json.dumps(tools))
    return total


def fake_embedding(text: str | list[int], dims: int = 1536) -> list[float]:
    """The fake's embedding: hashed bag of lowercased words (+ half-weight bigrams), L2-normalised.

    Values are float32-rounded, exactly what the SDK decodes from the base64 answer, so tests can
    compute expectations with it. Texts that share words have a higher cosine similarity.
    """
    words = [str(token) for token in text] if isinstance(text, list) else _WORD_RE.findall(text.lower())
    features = [(word, 1.0) for word in words] + [(f"{a} {b}", 0.5) for a, b in itertools.pairwise(words)]
    if not features:
        features = [("\x00empty", 1.0)]
    vector = [0.0] * dims
    for feature, weight in features:
        bucket = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little") % dims
        vector[bucket] += weight
    norm = math.sqrt(sum(value * value for value in vector))
    packed = struct.pack(f"<{dims}f", *(value / norm for value in vector))
    return list(struct.unpack(f"<{dims}f", packed))


def cosine_similarity(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors, for embedding assertions."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _message_text(item: Json) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content or []:
        if isinstance(part, dict):
            text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def _split_words(text: str) -> list[str]:
    """Streaming pieces, one per word (leading whitespace attached), covering the text exactly."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces.append(rest)
    return pieces


def _split_n(text: str, count: int) -> list[str]:
    """`count` nearly equal pieces (fewer if the text is shorter)."""
    if not text:
        return []
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _chunks(text: str, size: int) -> list[str]:
    return [text[index : index + size] for index in range(0, len(text), size)] or [""]


# --------------------------------------------------------------------------------------------------
# Responses input normalisation (input items become conversation items)
# --------------------------------------------------------------------------------------------------

_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


class _BadRequest(Exception):
    """A 400 in OpenAI's shape, raised from validation helpers."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


def _content_part(part: Any, role: str, where: str) -> Json:
    if isinstance(part, str):
        part = {"type": "output_text" if role == "assistant" else "input_text", "text": part}
    if not isinstance(part, dict) or "type" not in part:
        raise _BadRequest(f"Invalid value for '{where}': expected a content part object.", param=where)
    kind = part["type"]
    if kind in ("input_text", "output_text") and not isinstance(part.get("text"), str):
        raise _BadRequest(f"Missing required parameter: '{where}.text'.", param=f"{where}.text")
    if kind == "output_text":
        return {"type": "output_text", "text": part["text"], "annotations": part.get("annotations") or []}
    if kind == "input_text":
        return {"type": "input_text", "text": part["text"]}
    if kind == "input_image":
        return {
            "type": "input_image",
            "detail": part.get("detail") or "auto",
            "image_url": part.get("image_url"),
            "file_id": part.get("file_id"),
        }
    return dict(part)


def _to_item(raw: Any, index: int) -> Json:
    """Turn one Responses input item into the stored conversation item (ids, status, typed parts)."""
    where = f"input[{index}]"
    if not isinstance(raw, dict):
        raise _BadRequest(f"Invalid type for '{where}': expected an object.", param=where)
    kind = raw.get("type") or ("message" if "role" in raw else None)
    if kind == "message":
        role = raw.get("role")
        if role not in _MESSAGE_ROLES:
            raise _BadRequest(
                f"Invalid value: '{role}'. Supported values are: {sorted(_MESSAGE_ROLES)}.", param=where
            )
        content = raw.get("content")
        parts = [content] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise _BadRequest(f"Missing required parameter: '{where}.content'.", param=f"{where}.content")
        item: Json = {
            "id": raw.get("id") or _new_id("msg"),
            "type": "message",
            "role": role,
            "status": "completed",
            "content": [_content_part(part, role, f"{where}.content[{n}]") for n, part in enumerate(parts)],
        }
        if raw.get("phase"):
            item["phase"] = raw["phase"]
        return item
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(raw.get(name), str):
                raise _BadRequest(f"Missing required parameter: '{where}.{name}'.", param=f"{where}.{name}")
        return {**raw, "id": raw.get("id") or _new_id("fc"), "status": raw.get("status") or "completed"}
    if kind == "function_call_output":
        if not isinstance(raw.get("call_id"), str):
            raise _BadRequest(f"Missing required parameter: '{where}.call_id'.", param=f"{where}.call_id")
        if "output" not in raw:
            raise _BadRequest(f"Missing required parameter: '{where}.output'.", param=f"{where}.output")
        return {**raw, "id": raw.get("id") or _new_id("fco"), "status": raw.get("status") or "completed"}
    if kind is None:
        raise _BadRequest(f"Missing required parameter: '{where}.type'.", param=f"{where}.type")
    return {**raw, "id": raw.get("id") or _new_id("item")}


def _input_items(raw_input: Any) -> list[Json]:
    if raw_input is None:
        return []
    if isinstance(raw_input, str):
        raw_input = [{"type": "message", "role": "user", "content": raw_input}]
    if not isinstance(raw_input, list):
        raise _BadRequest("Invalid type for 'input': expected a string or an array of items.", param="input")
    return [_to_item(raw, index) for index, raw in enumerate(raw_input)]


def _check_tool_pairs(context: list[Json]) -> None:
    """OpenAI's 400s for a function call left unanswered or an output answering no call."""
    called = [item["call_id"] for item in context if item.get("type") == "function_call"]
    answered = {item["call_id"] for item in context if item.get("type") == "function_call_output"}
    for call_id in called:
        if call_id not in answered:
            raise _BadRequest(f"No tool output found for function call {call_id}.", param="input")
    for call_id in answered - set(called):
        raise _BadRequest(
            f"No tool call found for function call output with call_id {call_id}.", param="input"
        )


def _last_user_input(items: list[Json]) -> str:
    """What the default responder echoes: the last user text, or the outputs of a tool round."""
    outputs: list[str] = []
    for item in reversed(items):
        if item.get("type") == "function_call_output":
            output = item.get("output")
            outputs.insert(0, output if isinstance(output, str) else json.dumps(output))
            continue
        if outputs:
            break
        if item.get("type") == "message" and item.get("role") == "user":
            return _message_text(item)
    return "\n".join(outputs)


def echo_response(body: Json) -> Reply:
    """Default Responses behaviour: "echo: <last user text>"."""
    try:
        items = _input_items(body.get("input"))
    except _BadRequest:
        items = []
    return Reply(f"echo: {_last_user_input(items)}")


def echo_chat(body: Json) -> Reply:
    """Default Chat Completions behaviour: "echo: <last user or tool message text>"."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return Reply(f"echo: {_message_text(message)}")
    return Reply("echo: ")


# --------------------------------------------------------------------------------------------------
# Rendering a Reply into output items
# --------------------------------------------------------------------------------------------------


@dataclass
class _Hosted:
    kind: Literal["web_search_call", "code_interpreter_call"]
    final: Json
    code: str = ""


@dataclass
class _Rendered:
    """A Reply turned into final output items plus what streaming needs to replay them."""

    hosted: list[_Hosted]
    text: str
    text_deltas: list[str]
    annotations: list[Json]
    refusal: str | None
    message_id: str
    calls: list[Json]

    def message_item(self, status: str) -> Json | None:
        content: list[Json] = []
        if self.text or self.annotations:
            content.append(
                {"type": "output_text", "text": self.text, "annotations": self.annotations, "logprobs": []}
            )
        if self.refusal is not None:
            content.append({"type": "refusal", "refusal": self.refusal})
        if not content:
            return None
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def output(self, status: str) -> list[Json]:
        items = [copy.deepcopy(hosted.final) for hosted in self.hosted]
        message = self.message_item("incomplete" if status == "incomplete" else "completed")
        if message is not None:
            items.append(message)
        items.extend(copy.deepcopy(call) for call in self.calls)
        return items

    def output_tokens(self) -> int:
        spoken = self.text + (self.refusal or "") + "".join(call["arguments"] for call in self.calls)
        return max(1, _count_tokens(spoken + "".join(hosted.code for hosted in self.hosted)))


def _cite(text: str, anchor: str | None, link: str) -> tuple[str, int, int]:
    """Where a citation goes: over `anchor` if present in the text, else over an appended link."""
    if anchor and anchor in text:
        start = text.index(anchor)
        return text, start, start + len(anchor)
    text = f"{text} {link}" if text else link
    return text, len(text) - len(link), len(text)


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_CONTEXT_EXCEEDED_MESSAGE = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
_DEFAULT_MODELS = (
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
_RETIRED_MODELS = frozenset({"dall-e-2", "dall-e-3", "gpt-image-1"})
_STANDARD_IMAGE_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536"})
_FLEXIBLE_SIZE_MODELS = ("gpt-image-2", "gpt-image-2.5", "gpt-image-2.6")
_DELTA_CHARS = 16
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

Handler: TypeAlias = Callable[["_Call"], Awaitable[web.StreamResponse]]


@dataclass
class _Call:
    """One request being handled: the aiohttp request, its JSON body and the route's path parameters."""

    request: web.Request
    body: Json
    params: dict[str, str]


@dataclass
class _ResponseRun:
    """Everything needed to answer one POST /v1/responses, streamed or not."""

    id: str
    body: Json
    created_at: int
    conversation_id: str | None
    prior: list[Json]
    new_items: list[Json]
    visible_prior: list[Json]
    """The part of `prior` the model sees: all of it, unless `truncation: "auto"` dropped the oldest."""
    reply: Reply
    rendered: _Rendered
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class FakeOpenAI:
    """The stand-in OpenAI server. Use as `async with FakeOpenAI() as fake:`; see the module docstring."""

    def __init__(self, *, models: tuple[str, ...] = _DEFAULT_MODELS) -> None:
        self.requests: list[RecordedRequest] = []
        self.conversations: dict[str, FakeConversation] = {}
        self.stored_responses: dict[str, Json] = {}
        self.containers: dict[str, dict[str, StoredContainerFile]] = {}
        self.models: list[str] = list(models)
        self.retired_models: set[str] = set(_RETIRED_MODELS)
        self.invalid_api_keys: set[str] = {"invalid"}
        self.context_windows: dict[str, int] = {}
        """Per model: its context window in tokens (`estimate_context_tokens`); unnamed: unlimited."""
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
        self._running: dict[str, _ResponseRun] = {}
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/conversations"), self._create_conversation),
            ("GET", re.compile(r"/v1/conversations/(?P<cid>[^/]+)"), self._get_conversation),
            ("POST", re.compile(r"/v1/conversations/(?P<cid>[^/]+)"), self._update_conversation),
            ("DELETE", re.compile(r"/v1/conversations/(?P<cid>[^/]+)"), self._delete_conversation),
            ("GET", re.compile(r"/v1/conversations/(?P<cid>[^/]+)/items"), self._list_items),
            ("POST", re.compile(r"/v1/conversations/(?P<cid>[^/]+)/items"), self._create_items),
            ("GET", re.compile(r"/v1/conversations/(?P<cid>[^/]+)/items/(?P<iid>[^/]+)"), self._get_item),
            (
                "DELETE",
                re.compile(r"/v1/conversations/(?P<cid>[^/]+)/items/(?P<iid>[^/]+)"),
                self._delete_item,
            ),
            ("POST", re.compile(r"/v1/responses"), self._create_response),
            ("GET", re.compile(r"/v1/responses/(?P<rid>[^/]+)"), self._get_response),
            ("DELETE", re.compile(r"/v1/responses/(?P<rid>[^/]+)"), self._delete_response),
            ("POST", re.compile(r"/v1/responses/(?P<rid>[^/]+)/cancel"), self._cancel_response),
            ("POST", re.compile(r"/v1/chat/completions"), self._chat_completion),
            ("POST", re.compile(r"/v1/images/generations"), self._generate_images),
            ("POST", re.compile(r"/v1/embeddings"), self._create_embeddings),
            ("POST", re.compile(r"/v1/moderations"), self._create_moderation),
            ("GET", re.compile(r"/v1/models"), self._list_models),
            ("GET", re.compile(r"/v1/models/(?P<mid>[^/]+)"), self._get_model),
            ("GET", re.compile(r"/v1/containers/(?P<cid>[^/]+)/files"), self._list_container_files),
            (
                "GET",
                re.compile(r"/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)"),
                self._get_container_file,
            ),
            (
                "GET",
                re.compile(r"/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)/content"),
                self._get_container_file_content,
            ),
        ]

    # ---------------------------------------------------------------- lifecycle and test helpers

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port (prefer `async with FakeOpenAI()`)."""
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_response_prepare.append(self._add_common_headers)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening; in-flight handlers are cancelled after a short grace period."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        await self.close()
        if exc_type is None and self.server_errors:
            raise AssertionError(
                f"the fake OpenAI server crashed: {self.server_errors[0]!r}"
            ) from self.server_errors[0]

    def client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """A real SDK client pointed at this server (api_key "test"); use it as `async with`."""
        import openai

        kwargs.setdefault("api_key", "test")
        kwargs.setdefault("timeout", 30.0)
        return openai.AsyncOpenAI(base_url=self.base_url, **kwargs)

    def fail_next(self, path_prefix: str, step: HttpError | Drop, *, times: int = 1) -> None:
        """Make the next `times` requests under `path_prefix` (any route, e.g. "/v1/conversations") fail."""
        self._interrupts.extend((path_prefix, step) for _ in range(times))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path starts with `path_prefix` (e.g. "/v1/responses")."""
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `predicate()` holds; re-checked whenever a request arrives or finishes."""
        assert self._changed is not None, "start the server first"
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(
                f"condition not met within {timeout}s; {len(self.requests)} requests recorded: "
                + ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-10:])
            ) from None

    async def wait_for_requests(
        self,
        path_prefix: str,
        count: int = 1,
        *,
        method: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Wait until at least `count` requests under `path_prefix` have arrived; return them all."""
        await self.wait_for(lambda: len(self.requests_to(path_prefix, method)) >= count, timeout)
        return self.requests_to(path_prefix, method)

    async def wait_for_answers(
        self,
        path_prefix: str,
        count: int = 1,
        *,
        method: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Like wait_for_requests, but for requests whose answer has been fully sent."""
        await self.wait_for(
            lambda: sum(r.status is not None for r in self.requests_to(path_prefix, method)) >= count, timeout
        )
        return [r for r in self.requests_to(path_prefix, method) if r.status is not None]

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    # ---------------------------------------------------------------- dispatch

    async def _add_common_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", f"req_{secrets.token_hex(16)}")
        response.headers.setdefault("openai-version", "2020-10-01")
        response.headers.setdefault("openai-processing-ms", "1")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        bad_json = False
        if raw and "json" in request.headers.get("Content-Type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            json=body,
            headers={key.lower(): value for key, value in request.headers.items()},
            time=time.monotonic(),
        )
        self.requests.append(record)
        self.inflight_requests += 1
        self.max_inflight_requests = max(self.max_inflight_requests, self.inflight_requests)
        await self._notify()
        response: web.StreamResponse | None = None
        try:
            response = await self._route(request, body, bad_json)
            return response
        except _BadRequest as error:
            response = _error(error.status, error.message, param=error.param, code=error.code)
            return response
        except Exception as error:  # a bug in the fake or a test's responder: fail loudly, never retried
            self.server_errors.append(error)
            response = _error(
                500,
                f"fake OpenAI server error: {error!r}",
                headers={"x-should-retry": "false"},
                type="server_error",
            )
            return response
        finally:
            self.inflight_requests -= 1
            transport = request.transport
            aborted = transport is None or transport.is_closing()
            record.status = None if response is None or aborted else response.status
            record.finished_at = time.monotonic()
            await self._notify()

    async def _route(self, request: web.Request, body: Any, bad_json: bool) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = auth[len("Bearer ") :].strip()
        if key in self.invalid_api_keys:
            return _error(
                401,
                f"Incorrect API key provided: {key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        if bad_json:
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            )
        handler: Handler | None = None
        params: dict[str, str] = {}
        for method, pattern, candidate in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                handler, params = candidate, match.groupdict()
                break
        if handler is None:
            return _error(404, f"Invalid URL ({request.method} {request.path})")
        for index, (prefix, step) in enumerate(self._interrupts):
            if request.path.startswith(prefix):
                del self._interrupts[index]
                return await _fail(request, step)
        if body is not None and not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        return await handler(_Call(request=request, body=body or {}, params=params))

    def _check_model(self, body: Json, *, required: bool = True) -> str:
        model = body.get("model")
        if not model:
            if required:
                raise _BadRequest(
                    "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
                )
            return ""
        if not isinstance(model, str):
            raise _BadRequest("Invalid type for 'model': expected a string.", param="model")
        if model in self.retired_models:
            raise _BadRequest(
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                status=404,
            )
        return model

    # ---------------------------------------------------------------- conversations

    def _conversation(self, conversation_id: str) -> FakeConversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise _BadRequest(
                f"Conversation with id '{conversation_id}' not found.", param="conversation", status=404
            )
        return conversation

    async def _create_conversation(self, call: _Call) -> web.StreamResponse:
        metadata = _check_metadata(call.body.get("metadata"))
        raw_items = call.body.get("items") or []
        if len(raw_items) > 20:
            raise _BadRequest("Invalid 'items': array too long. Expected at most 20 items.", param="items")
        items = _input_items(raw_items)
        conversation = FakeConversation(
            id=_new_id("conv"), created_at=int(time.time()), metadata=metadata, items=items
        )
        self.conversations[conversation.id] = conversation
        return _json(conversation.as_json())

    async def _get_conversation(self, call: _Call) -> web.StreamResponse:
        return _json(self._conversation(call.params["cid"]).as_json())

    async def _update_conversation(self, call: _Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        if "metadata" not in call.body:
            raise _BadRequest("Missing required parameter: 'metadata'.", param="metadata")
        conversation.metadata = _check_metadata(call.body["metadata"])
        return _json(conversation.as_json())

    async def _delete_conversation(self, call: _Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        del self.conversations[conversation.id]
        return _json({"id": conversation.id, "object": "conversation.deleted", "deleted": True})

    async def _list_items(self, call: _Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        query = call.request.query
        order = query.get("order", "desc")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise _BadRequest("Invalid 'limit': expected an integer.", param="limit") from None
        if not 1 <= limit <= 100 or order not in ("asc", "desc"):
            raise _BadRequest("Invalid 'limit' or 'order'.", param="limit")
        items = list(conversation.items) if order == "asc" else list(reversed(conversation.items))
        after = query.get("after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise _BadRequest(f"Item with id '{after}' not found.", param="after", status=404)
            items = items[ids.index(after) + 1 :]
        return _json(_item_page(items[:limit], has_more=len(items) > limit))

    async def _create_items(self, call: _Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        raw_items = call.body.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise _BadRequest("Missing required parameter: 'items'.", param="items")
        if len(raw_items) > 20:
            raise _BadRequest("Invalid 'items': array too long. Expected at most 20 items.", param="items")
        items = _input_items(raw_items)
        conversation.items.extend(items)
        return _json(_item_page(copy.deepcopy(items), has_more=False))

    def _find_item(self, call: _Call) -> tuple[FakeConversation, Json]:
        conversation = self._conversation(call.params["cid"])
        for item in conversation.items:
            if item.get("id") == call.params["iid"]:
                return conversation, item
        raise _BadRequest(f"Item with id '{call.params['iid']}' not found.", status=404)

    async def _get_item(self, call: _Call) -> web.StreamResponse:
        return _json(self._find_item(call)[1])

    async def _delete_item(self, call: _Call) -> web.StreamResponse:
        conversation, item = self._find_item(call)
        conversation.items.remove(item)
        return _json(conversation.as_json())

    # ---------------------------------------------------------------- responses

    async def _create_response(self, call: _Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        conversation_ref = body.get("conversation")
        conversation_id = (
            conversation_ref.get("id") if isinstance(conversation_ref, dict) else conversation_ref
        )
        previous_id = body.get("previous_response_id")
        if conversation_id and previous_id:
            raise _BadRequest(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                param="conversation",
                code="mutually_exclusive_parameters",
            )
        prior: list[Json] = []
        if conversation_id:
            prior = list(self._conversation(conversation_id).items)
        elif previous_id:
            if previous_id not in self._contexts:
                raise _BadRequest(
                    f"Previous response with id '{previous_id}' not found.",
                    param="previous_response_id",
                    status=404,
                )
            prior = list(self._contexts[previous_id])
        new_items = _input_items(body.get("input"))
        _check_tool_pairs(prior + new_items)
        visible_prior = self._fit_context_window(model, body, conversation_id, prior, new_items)

        if conversation_id:
            self.inflight_per_conversation[conversation_id] += 1
            self.max_inflight_per_conversation = max(
                self.max_inflight_per_conversation, self.inflight_per_conversation[conversation_id]
            )
        try:
            step = await self.responses.next_step(body)
            if isinstance(step, HttpError | Drop):
                return await _fail(call.request, step)
            if not isinstance(step, Reply):
                raise TypeError(f"a Responses step must be Reply, HttpError or Drop, not {step!r}")
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            run = _ResponseRun(
                id=_new_id("resp"),
                body=body,
                created_at=int(time.time()),
                conversation_id=conversation_id,
                prior=prior,
                new_items=new_items,
                visible_prior=visible_prior,
                reply=step,
                rendered=self._render(step, body),
            )
            if step.malformed and not body.get("stream"):
                return web.Response(body=b'{"id": "resp_', content_type="application/json")
            if body.get("stream"):
                return await self._stream_response(call.request, run)
            response = self._finish(run)
            return _json(response)
        finally:
            if conversation_id:
                self.inflight_per_conversation[conversation_id] -= 1

    def _fit_context_window(
        self, model: str, body: Json, conversation_id: str | None, prior: list[Json], new_items: list[Json]
    ) -> list[Json]:
        """The prior items the model sees: all, or (with `truncation: "auto"`) the newest that fit.

        Over the window without truncation, or when the new input alone is too long: OpenAI's 400.
        """
        truncation = body.get("truncation")
        if truncation not in (None, "auto", "disabled"):
            raise _BadRequest(
                f"Invalid value: '{truncation}'. Supported values are: 'auto' and 'disabled'.",
                param="truncation",
                code="invalid_value",
            )
        window = self.context_windows.get(model)
        if window is None:
            return prior
        sizes = [_item_tokens(item) for item in prior]
        total = estimate_context_tokens(new_items, body.get("instructions"), body.get("tools")) + sum(sizes)
        if total <= window:
            return prior
        if truncation != "auto" or not self.honours_truncation:
            raise _BadRequest(_CONTEXT_EXCEEDED_MESSAGE, param="input", code="context_length_exceeded")
        start = 0
        while start < len(prior) and total > window:
            total -= sizes[start]
            start += 1
        while start < len(prior) and prior[start].get("type") == "function_call_output":
            total -= sizes[start]  # an output whose call was dropped goes with it
            start += 1
        if total > window:
            raise _BadRequest(_CONTEXT_EXCEEDED_MESSAGE, param="input", code="context_length_exceeded")
        self.truncations.append(Truncation(model, conversation_id, start, len(prior) - start))
        return prior[start:]

    def _render(self, reply: Reply, body: Json) -> _Rendered:
        """Build the final output items of a Reply: hosted calls, the message with annotations, calls."""
        include = set(body.get("include") or [])
        text = reply.text
        annotations: list[Json] = list(reply.annotations)
        hosted: list[_Hosted] = []
        response_container: str | None = None
        for tool in reply.hosted:
            if isinstance(tool, WebSearchCall):
                action: Json = {"type": "search", "query": tool.query}
                if "web_search_call.action.sources" in include:
                    action["sources"] = [{"type": "url", "url": c.url} for c in tool.citations]
                hosted.append(
                    _Hosted(
                        "web_search_call",
                        {
                            "id": _new_id("ws"),
                            "type": "web_search_call",
                            "status": "completed",
                            "action": action,
                        },
                    )
                )
                for citation in tool.citations:
                    link = f"([{urlparse(citation.url).hostname or citation.title}]({citation.url}))"
                    text, start, end = _cite(text, citation.anchor, link)
                    annotations.append(
                        {
                            "type": "url_citation",
                            "url": citation.url,
                            "title": citation.title,
                            "start_index": start,
                            "end_index": end,
                        }
                    )
            else:
                container_id = tool.container_id or response_container or _new_id("cntr")
                response_container = response_container or container_id
                container = self.containers.setdefault(container_id, {})
                outputs: list[Json] = []
                if tool.logs:
                    outputs.append({"type": "logs", "logs": tool.logs})
                for produced in [*tool.files, *tool.images]:
                    stored = StoredContainerFile(
                        id=_new_id("cfile"),
                        container_id=container_id,
                        filename=produced.filename,
                        data=produced.data,
                        created_at=int(time.time()),
                    )
                    container[stored.id] = stored
                    if produced in tool.images:
                        encoded = base64.b64encode(produced.data).decode()
                        outputs.append({"type": "image", "url": f"data:image/png;base64,{encoded}"})
                    path = f"sandbox:/mnt/data/{produced.filename}"
                    text, start, end = _cite(text, path, f"[{produced.filename}]({path})")
                    annotations.append(
                        {
                            "type": "container_file_citation",
                            "container_id": container_id,
                            "file_id": stored.id,
                            "filename": produced.filename,
                            "start_index": start,
                            "end_index": end,
                        }
                    )
                final = {
                    "id": _new_id("ci"),
                    "type": "code_interpreter_call",
                    "status": "completed",
                    "code": tool.code,
                    "container_id": container_id,
                    "outputs": outputs if "code_interpreter_call.outputs" in include else None,
                }
                hosted.append(_Hosted("code_interpreter_call", final, code=tool.code))
        annotations.sort(key=lambda a: int(a.get("start_index") or a.get("index") or 0))
        deltas = _split_words(text) if reply.deltas is None else _split_n(text, reply.deltas)
        calls = [
            {
                "id": _new_id("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": fc.call_id or f"call_{secrets.token_hex(12)}",
                "name": fc.name,
                "arguments": fc.arguments_json(),
            }
            for fc in reply.calls
        ]
        return _Rendered(
            hosted=hosted,
            text=text,
            text_deltas=deltas,
            annotations=annotations,
            refusal=reply.refusal,
            message_id=_new_id("msg"),
            calls=calls,
        )

    def _response_json(self, run: _ResponseRun, status: str, output: list[Json]) -> Json:
        """The Response object in its current state (in_progress snapshots have no output or usage)."""
        body, reply = run.body, run.reply
        text_config = body.get("text") or {}
        usage: Json | None = None
        if status in ("completed", "incomplete"):
            if reply.usage is not None:
                input_tokens, output_tokens = reply.usage
            else:
                input_tokens = max(
                    1,
                    _count_tokens(json.dumps([*run.visible_prior, *run.new_items, body.get("instructions")])),
                )
                output_tokens = run.rendered.output_tokens()
            usage = {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
        error = {"code": reply.error_code, "message": reply.error_message} if status == "failed" else None
        incomplete = {"reason": reply.incomplete_reason} if status == "incomplete" else None
        return {
            "id": run.id,
            "object": "response",
            "created_at": run.created_at,
            "status": status,
            "background": bool(body.get("background", False)),
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "conversation": {"id": run.conversation_id} if run.conversation_id else None,
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": text_config.get("format") or {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
            "prompt_cache_key": body.get("prompt_cache_key"),
            "safety_identifier": body.get("safety_identifier"),
        }

    def _finish(self, run: _ResponseRun, status: str | None = None) -> Json:
        """Final state: store it and, unless it failed, append input + output to the conversation."""
        status = status or run.reply.status
        output = run.rendered.output(status) if status != "cancelled" else []
        response = self._response_json(run, status, output)
        if status in ("completed", "incomplete"):
            self._contexts[run.id] = [*run.prior, *copy.deepcopy(run.new_items), *copy.deepcopy(output)]
            if run.conversation_id and run.conversation_id in self.conversations:
                self.conversations[run.conversation_id].items.extend(
                    [*copy.deepcopy(run.new_items), *copy.deepcopy(output)]
                )
        if run.body.get("store", True):
            self.stored_responses[run.id] = copy.deepcopy(response)
        return response

    def _response_events(self, run: _ResponseRun) -> Iterator[Json]:
        """The real SSE event sequence (without sequence numbers); the terminal event finishes the run."""
        rendered, status = run.rendered, run.reply.status
        snapshot = self._response_json(run, "in_progress", [])
        yield {"type": "response.created", "response": snapshot}
        yield {"type": "response.in_progress", "response": snapshot}
        index = 0
        for hosted in rendered.hosted:
            yield from _hosted_events(index, hosted)
            index += 1
        message = rendered.message_item("completed" if status != "incomplete" else "incomplete")
        if message is not None:
            yield from _message_events(index, rendered, message)
            index += 1
        for fc in rendered.calls:
            yield from _function_call_events(index, fc)
            index += 1
        response = self._finish(run)
        terminal = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            status, "response.failed"
        )
        yield {"type": terminal, "response": response}

    async def _stream_response(self, request: web.Request, run: _ResponseRun) -> web.StreamResponse:
        writer = _SseWriter(request, run.reply, named_events=True)
        await writer.open()
        self._running[run.id] = run
        if run.body.get("store", True):
            self.stored_responses[run.id] = self._response_json(run, "in_progress", [])
        try:
            sequence = itertools.count()
            events = self._response_events(run)
            while True:
                if run.cancelled.is_set():
                    response = self._finish(run, "cancelled")
                    event: Json = {
                        "type": "response.failed",
                        "response": response,
                        "sequence_number": next(sequence),
                    }
                    if await writer.send("response.failed", event):
                        await writer.close()
                    return writer.response
                try:
                    event = next(events)
                except StopIteration:
                    break
                event["sequence_number"] = next(sequence)
                if not await writer.send(str(event["type"]), event):
                    return writer.response
            await writer.close()
            return writer.response
        finally:
            self._running.pop(run.id, None)

    async def _get_response(self, call: _Call) -> web.StreamResponse:
        response = self.stored_responses.get(call.params["rid"])
        if response is None:
            raise _BadRequest(f"Response with id '{call.params['rid']}' not found.", status=404)
        return _json(response)

    async def _delete_response(self, call: _Call) -> web.StreamResponse:
        if self.stored_responses.pop(call.params["rid"], None) is None:
            raise _BadRequest(f"Response with id '{call.params['rid']}' not found.", status=404)
        return _json({"id": call.params["rid"], "object": "response", "deleted": True})

    async def _cancel_response(self, call: _Call) -> web.StreamResponse:
        """Cancel a response still streaming; it ends with status `cancelled` (in a response.failed event)."""
        response_id = call.params["rid"]
        run = self._running.get(response_id)
        if run is None:
            stored = self.stored_responses.get(response_id)
            if stored is None:
                raise _BadRequest(f"Response with id '{response_id}' not found.", status=404)
            raise _BadRequest(f"Cannot cancel a response with status '{stored['status']}'.")
        run.cancelled.set()
        return _json(self._response_json(run, "cancelled", []))

    # ---------------------------------------------------------------- chat completions

    async def _chat_completion(self, call: _Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("Missing required parameter: 'messages'.", param="messages")
        _check_chat_messages(messages)
        window = self.context_windows.get(model)
        if window is not None:
            used = estimate_context_tokens(messages, tools=body.get("tools"))
            if used > window:
                raise _BadRequest(
                    f"This model's maximum context length is {window} tokens. However, your messages "
                    f"resulted in {used} tokens. Please reduce the length of the messages.",
                    param="messages",
                    code="context_length_exceeded",
                )
        step = await self.chat.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await _fail(call.request, step)
        if not isinstance(step, Reply):
            raise TypeError(f"a chat step must be Reply, HttpError or Drop, not {step!r}")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.malformed and not body.get("stream"):
            return web.Response(body=b'{"id": "chatcmpl-', content_type="application/json")

        text: str | None = step.text
        annotations: list[Json] = []
        for tool in step.hosted:
            if isinstance(tool, WebSearchCall):
                for citation in tool.citations:
                    link = f"([{urlparse(citation.url).hostname or citation.title}]({citation.url}))"
                    text, start, end = _cite(text or "", citation.anchor, link)
                    annotations.append(
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": citation.url,
                                "title": citation.title,
                                "start_index": start,
                                "end_index": end,
                            },
                        }
                    )
        if not text and (step.calls or step.refusal is not None):
            text = None
        tool_calls: list[Json] = [
            {
                "id": fc.call_id or f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": fc.name, "arguments": fc.arguments_json()},
            }
            for fc in step.calls
        ]
        if step.status == "incomplete":
            finish_reason = "length" if step.incomplete_reason == "max_output_tokens" else "content_filter"
        else:
            finish_reason = "tool_calls" if tool_calls else "stop"
        if step.usage is not None:
            prompt_tokens, completion_tokens = step.usage
        else:
            prompt_tokens = max(1, _count_tokens(json.dumps(messages)))
            spoken = (
                (text or "") + (step.refusal or "") + "".join(t["function"]["arguments"] for t in tool_calls)
            )
            completion_tokens = max(1, _count_tokens(spoken))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = f"chatcmpl-{secrets.token_hex(14)}"
        created = int(time.time())
        failed = step.status in ("failed", "cancelled")
        error_body = {
            "error": {
                "message": step.error_message,
                "type": "server_error",
                "param": None,
                "code": step.error_code,
            }
        }

        if not body.get("stream"):
            if failed:
                return web.json_response(error_body, status=500)
            message: Json = {
                "role": "assistant",
                "content": text,
                "refusal": step.refusal,
                "annotations": annotations,
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            return _json(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": None,
                }
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: Json, finish: str | None = None) -> Json:
            data: Json = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                data["usage"] = None
            return data

        def chunks() -> Iterator[Json]:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            pieces = _split_words(text or "") if step.deltas is None else _split_n(text or "", step.deltas)
            for piece in pieces:
                yield chunk({"content": piece})
            if annotations:
                yield chunk({"annotations": annotations})
            for piece in _split_words(step.refusal or ""):
                yield chunk({"refusal": piece})
            for index, tool_call in enumerate(tool_calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": tool_call["id"],
                                "type": "function",
                                "function": {"name": tool_call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in _chunks(tool_call["function"]["arguments"], _DELTA_CHARS):
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            if failed:
                yield error_body
                return
            yield chunk({}, finish_reason)
            if include_usage:
                yield {**chunk({}), "choices": [], "usage": usage}

        writer = _SseWriter(call.request, step, named_events=False)
        await writer.open()
        for data in chunks():
            if not await writer.send(None, data):
                return writer.response
        if not failed and not await writer.send_raw(b"data: [DONE]\n\n"):
            return writer.response
        await writer.close()
        return writer.response

    # ---------------------------------------------------------------- images, embeddings, moderations

    async def _generate_images(self, call: _Call) -> web.StreamResponse:
        body = call.body
        if "model" not in body:
            body = {**body, "model": "dall-e-2"}  # the API's historical default, now retired
        model = self._check_model(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _BadRequest("Missing required parameter: 'prompt'.", param="prompt")
        if body.get("response_format") is not None:
            raise _BadRequest(
                "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter"
            )
        count = body.get("n") or 1
        if not isinstance(count, int) or not 1 <= count <= 10:
            raise _BadRequest(
                f"Invalid 'n': integer above maximum value. Expected a value <= 10, got {count}.", param="n"
            )
        size = body.get("size") or "auto"
        width, height = _image_size(model, size)
        step = await self.images.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await _fail(call.request, step)
        if step is not None and not isinstance(step, ImageReply):
            raise TypeError(f"an images step must be ImageReply, HttpError, Drop or None, not {step!r}")
        reply = step or ImageReply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        pixel_width, pixel_height = reply.size or (width, height)
        images = []
        for index in range(count):
            digest = hashlib.blake2b(f"{prompt}\x00{index}".encode(), digest_size=3).digest()
            rgb = reply.rgb or (digest[0], digest[1], digest[2])
            png = encode_png(pixel_width, pixel_height, rgb)
            images.append({"b64_json": base64.b64encode(png).decode()})
        quality = (
            body.get("quality")
            if body.get("quality") in ("low", "medium", "high", "xhigh", "max")
            else "medium"
        )
        prompt_tokens = _count_tokens(prompt)
        output_tokens = 1056 * count
        return _json(
            {
                "created": int(time.time()),
                "data": images,
                "background": "transparent" if body.get("background") == "transparent" else "opaque",
                "output_format": "png",
                "quality": quality,
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": prompt_tokens,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": prompt_tokens},
                    "output_tokens": output_tokens,
                    "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
                    "total_tokens": prompt_tokens + output_tokens,
                },
            }
        )

    async def _create_embeddings(self, call: _Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        inputs = _embedding_inputs(body.get("input"))
        default_dims = _EMBEDDING_DEFAULT_DIMS.get(model, 1536)
        dims = body.get("dimensions", default_dims)
        if "dimensions" in body and model == "text-embedding-ada-002":
            raise _BadRequest("This model does not support specifying dimensions.", param="dimensions")
        if not isinstance(dims, int) or not 1 <= dims <= default_dims:
            raise _BadRequest(
                f"Invalid 'dimensions': expected 1..{default_dims}, got {dims}.", param="dimensions"
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _BadRequest(
                "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format"
            )
        step = await self.embeddings.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await _fail(call.request, step)
        if step is not None:
            raise TypeError(f"an embeddings step must be HttpError, Drop or None, not {step!r}")
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dims)
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t) if isinstance(t, list) else max(1, _count_tokens(t)) for t in inputs)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _create_moderation(self, call: _Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body, required=False) or "omni-moderation-latest"
        raw = body.get("input")
        groups: list[set[str]]  # the input types of each result
        if isinstance(raw, str):
            groups = [{"text"}]
        elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            groups = [{"text"} for _ in raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw):
            kinds = {x.get("type") for x in raw}
            if not kinds <= {"text", "image_url"}:
                raise _BadRequest(
                    "Invalid 'input': parts must be of type 'text' or 'image_url'.", param="input"
                )
            groups = [{"text" if kind == "text" else "image" for kind in kinds}]
        else:
            raise _BadRequest("Missing required parameter: 'input'.", param="input")
        step = await self.moderations.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await _fail(call.request, step)
        results = step if isinstance(step, list) else [step or ModerationResult()] * len(groups)
        checked = [r for r in results if isinstance(r, ModerationResult)]
        if len(checked) != len(groups) or len(checked) != len(results):
            raise TypeError(
                f"a moderation step must be ModerationResult(s) for {len(groups)} inputs, not {step!r}"
            )
        delay = max(r.delay_s for r in checked)
        if delay:
            await asyncio.sleep(delay)
        return _json(
            {
                "id": f"modr-{secrets.token_hex(12)}",
                "model": model,
                "results": [_moderation_json(r, g) for r, g in zip(checked, groups, strict=True)],
            }
        )

    # ---------------------------------------------------------------- models and containers

    def _model_json(self, model: str) -> Json:
        owner = "openai" if not model.startswith("text-embedding") else "openai-internal"
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": owner}

    async def _list_models(self, call: _Call) -> web.StreamResponse:
        return _json({"object": "list", "data": [self._model_json(m) for m in self.models]})

    async def _get_model(self, call: _Call) -> web.StreamResponse:
        model = call.params["mid"]
        if model not in self.models:
            raise _BadRequest(
                f"The model '{model}' does not exist", param="model", code="model_not_found", status=404
            )
        return _json(self._model_json(model))

    def _container(self, container_id: str) -> dict[str, StoredContainerFile]:
        container = self.containers.get(container_id)
        if container is None:
            raise _BadRequest(f"Container with id '{container_id}' not found.", status=404)
        return container

    def _container_file(self, call: _Call) -> StoredContainerFile:
        stored = self._container(call.params["cid"]).get(call.params["fid"])
        if stored is None:
            raise _BadRequest(f"File with id '{call.params['fid']}' not found.", status=404)
        return stored

    async def _list_container_files(self, call: _Call) -> web.StreamResponse:
        files = [f.as_json() for f in self._container(call.params["cid"]).values()]
        return _json(
            {
                "object": "list",
                "data": files,
                "first_id": files[0]["id"] if files else None,
                "last_id": files[-1]["id"] if files else None,
                "has_more": False,
            }
        )

    async def _get_container_file(self, call: _Call) -> web.StreamResponse:
        return _json(self._container_file(call).as_json())

    async def _get_container_file_content(self, call: _Call) -> web.StreamResponse:
        return web.Response(body=self._container_file(call).data, content_type="application/octet-stream")


# --------------------------------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------------------------------


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _error(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    error_type = type or _ERROR_TYPES.get(status, "server_error")
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


async def _fail(request: web.Request, step: HttpError | Drop) -> web.StreamResponse:
    """Answer with a scripted HTTP error, or drop the connection."""
    if step.delay_s:
        await asyncio.sleep(step.delay_s)
    if isinstance(step, Drop):
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
    code = step.code if step.code is not None else ("rate_limit_exceeded" if step.status == 429 else None)
    return _error(
        step.status, step.message, type=step.type, param=step.param, code=code, headers=step.headers
    )


class _SseWriter:
    """Writes SSE frames, applying a Reply's pacing, cut-off and malformed-line faults."""

    def __init__(self, request: web.Request, reply: Reply, *, named_events: bool) -> None:
        self.request = request
        self.reply = reply
        self.named_events = named_events
        self.response = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        self.sent = 0

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, event: str | None, data: Json) -> bool:
        """Send one event; False once the stream is over (cut on purpose or the client went away)."""
        if self.reply.delta_delay_s and self._paced(event, data):
            await asyncio.sleep(self.reply.delta_delay_s)
        frame = (
            f"event: {event}\ndata: {_dumps(data)}\n\n" if self.named_events else f"data: {_dumps(data)}\n\n"
        )
        if not await self.send_raw(frame.encode()):
            return False
        self.sent += 1
        if self.reply.malformed and self.sent == 2:
            garbage = b'data: {"delta": \n\n'  # invalid JSON where a whole event should be
            if self.named_events:
                garbage = b"event: response.output_text.delta\n" + garbage
            if not await self.send_raw(garbage):
                return False
        if self.reply.cut_after is not None and self.sent >= self.reply.cut_after:
            if self.request.transport is not None:
                self.request.transport.abort()
            return False
        return True

    def _paced(self, event: str | None, data: Json) -> bool:
        """Whether the delay goes before this event: every one but the first, or text deltas only."""
        if self.reply.pace == "events":
            return self.sent > 0
        if event is not None:
            return event.endswith((".output_text.delta", ".refusal.delta"))
        return any((choice.get("delta") or {}).get("content") for choice in data.get("choices") or [])

    async def send_raw(self, frame: bytes) -> bool:
        try:
            await self.response.write(frame)
        except (ConnectionResetError, RuntimeError):
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self.response.write_eof()


def _hosted_events(index: int, hosted: _Hosted) -> Iterator[Json]:
    final = hosted.final
    item_id = final["id"]
    if hosted.kind == "web_search_call":
        added = {
            **final,
            "status": "in_progress",
            "action": {"type": "search", "query": final["action"]["query"]},
        }
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        for phase in ("in_progress", "searching", "completed"):
            yield {"type": f"response.web_search_call.{phase}", "item_id": item_id, "output_index": index}
    else:
        added = {**final, "status": "in_progress", "code": "", "outputs": None}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        yield {
            "type": "response.code_interpreter_call.in_progress",
            "item_id": item_id,
            "output_index": index,
        }
        for line in hosted.code.splitlines(keepends=True):
            yield {
                "type": "response.code_interpreter_call_code.delta",
                "item_id": item_id,
                "output_index": index,
                "delta": line,
            }
        yield {
            "type": "response.code_interpreter_call_code.done",
            "item_id": item_id,
            "output_index": index,
            "code": hosted.code,
        }
        yield {
            "type": "response.code_interpreter_call.interpreting",
            "item_id": item_id,
            "output_index": index,
        }
        yield {"type": "response.code_interpreter_call.completed", "item_id": item_id, "output_index": index}
    yield {"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(final)}


def _message_events(index: int, rendered: _Rendered, message: Json) -> Iterator[Json]:
    item_id = message["id"]
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**message, "status": "in_progress", "content": []},
    }
    where = {"item_id": item_id, "output_index": index}
    for content_index, part in enumerate(message["content"]):
        where_part = {**where, "content_index": content_index}
        if part["type"] == "output_text":
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield {"type": "response.content_part.added", **where_part, "part": empty}
            for delta in rendered.text_deltas:
                yield {"type": "response.output_text.delta", **where_part, "delta": delta, "logprobs": []}
            for annotation_index, annotation in enumerate(part["annotations"]):
                yield {
                    "type": "response.output_text.annotation.added",
                    **where_part,
                    "annotation_index": annotation_index,
                    "annotation": annotation,
                }
            yield {"type": "response.output_text.done", **where_part, "text": part["text"], "logprobs": []}
        else:
            yield {
                "type": "response.content_part.added",
                **where_part,
                "part": {"type": "refusal", "refusal": ""},
            }
            for delta in _split_words(part["refusal"]):
                yield {"type": "response.refusal.delta", **where_part, "delta": delta}
            yield {"type": "response.refusal.done", **where_part, "refusal": part["refusal"]}
        yield {"type": "response.content_part.done", **where_part, "part": copy.deepcopy(part)}
    yield {"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(message)}


def _function_call_events(index: int, fc: Json) -> Iterator[Json]:
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**fc, "status": "in_progress", "arguments": ""},
    }
    for piece in _chunks(fc["arguments"], _DELTA_CHARS):
        yield {
            "type": "response.function_call_arguments.delta",
            "item_id": fc["id"],
            "output_index": index,
            "delta": piece,
        }
    yield {
        "type": "response.function_call_arguments.done",
        "item_id": fc["id"],
        "output_index": index,
        "arguments": fc["arguments"],
    }
    yield {"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(fc)}


def _item_page(items: list[Json], *, has_more: bool) -> Json:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def _check_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _BadRequest("Invalid type for 'metadata': expected an object of strings.", param="metadata")
    if len(raw) > 16:
        raise _BadRequest("Invalid 'metadata': too many properties. Expected at most 16.", param="metadata")
    for key, value in raw.items():
        if len(key) > 64 or len(value) > 512:
            raise _BadRequest(
                "Invalid 'metadata': keys are at most 64 and values 512 characters.", param="metadata"
            )
    return dict(raw)


def _check_chat_messages(messages: list[Any]) -> None:
    """OpenAI's rules for tool messages: each answers a preceding tool call, and every call is answered."""
    pending: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            raise _BadRequest(
                f"Invalid value for 'messages[{index}].role'.", param=f"messages.[{index}].role"
            )
        if message["role"] == "tool":
            if message.get("tool_call_id") not in pending:
                raise _BadRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            raise _BadRequest(_unanswered_tool_calls(pending), param=f"messages.[{index}].role")
        if message["role"] == "assistant":
            pending = [str(tc.get("id")) for tc in message.get("tool_calls") or [] if isinstance(tc, dict)]
    if pending:
        raise _BadRequest(_unanswered_tool_calls(pending), param="messages")


def _unanswered_tool_calls(pending: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}"
    )


def _image_size(model: str, size: Any) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    if size in _STANDARD_IMAGE_SIZES:
        width, height = (int(n) for n in size.split("x"))
        return width, height
    match = re.fullmatch(r"(\d+)x(\d+)", size) if isinstance(size, str) else None
    if match and model.startswith(_FLEXIBLE_SIZE_MODELS):
        width, height = int(match[1]), int(match[2])
        if (
            width % 16 == 0
            and height % 16 == 0
            and 1 / 3 <= width / max(height, 1) <= 3
            and max(width, height) <= 3840
            and min(width, height) <= 2160
        ):
            return width, height
    raise _BadRequest(
        f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.",
        param="size",
        code="invalid_value",
    )


def _embedding_inputs(raw: Any) -> list[str | list[int]]:
    invalid = _BadRequest(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        param="input",
    )
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        raw = [raw]  # one input
    if not isinstance(raw, list) or not raw or len(raw) > 2048:
        raise invalid
    for entry in raw:
        if isinstance(entry, str):
            if not entry:
                raise invalid
        elif not (isinstance(entry, list) and entry and all(isinstance(x, int) for x in entry)):
            raise invalid
    return raw


def _moderation_json(result: ModerationResult, input_types: set[str]) -> Json:
    flagged = set(result.flagged_categories)
    applied = {
        category: [
            kind
            for kind in ("text", "image")
            if kind in input_types and (kind == "text" or category in _IMAGE_MODERATION_CATEGORIES)
        ]
        for category in MODERATION_CATEGORIES
    }
    return {
        "flagged": bool(flagged),
        "categories": {category: category in flagged for category in MODERATION_CATEGORIES},
        "category_scores": {
            category: 0.97 if category in flagged else 1e-5 for category in MODERATION_CATEGORIES
        },
        "category_applied_input_types": applied,
    }
