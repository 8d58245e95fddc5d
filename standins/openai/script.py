"""Scripting the fake: what the model answers (``Reply`` with calls, hosted tools, faults and pacing),
HTTP errors and dropped connections, image and moderation overrides, and the per-endpoint ``Script``
queues a test pushes them on."""

from __future__ import annotations

import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, TypeAlias

from .tokens import Json


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


IMAGE_CALL_INPUT_TOKENS = 40
IMAGE_CALL_OUTPUT_TOKENS = 1056
"""A medium-quality 1024x1024 drawing's output tokens, as the Images API stand-in counts too."""


@dataclass
class ImageGenerationCall:
    """A hosted image generation (Responses only): an `image_generation_call` item whose `result` is
    the image as base64 (a real PNG of `size` pixels in `rgb`, unless `image` gives the bytes).

    Streamed with `response.image_generation_call.in_progress`, `generating`, `partial_image`
    (`partial_images` of them) and `completed`; `failed` ends the call with status `failed` and no
    result, as a moderation refusal does. `usage`: the (input, output) tokens the call adds to the
    response's `tool_usage.image_gen`; None: its usage record is missing (a response whose calls all
    miss theirs has no `tool_usage`).
    """

    revised_prompt: str | None = None
    image: bytes | None = None
    rgb: tuple[int, int, int] = (40, 90, 160)
    size: tuple[int, int] = (8, 8)
    partial_images: int = 1
    failed: bool = False
    usage: tuple[int, int] | None = (IMAGE_CALL_INPUT_TOKENS, IMAGE_CALL_OUTPUT_TOKENS)


@dataclass
class FileSearchCall:
    """A hosted file search (Responses only): the model searches the request's vector stores for
    `queries`, and cites (with `file_citation` annotations) the files of the best `cite` results."""

    queries: list[str]
    cite: int = 1
    """How many of the best-ranked files the answer cites (0: none)."""
    status: str = "completed"


HostedCall: TypeAlias = CodeInterpreterCall | WebSearchCall | ImageGenerationCall | FileSearchCall

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
    `annotations`: extra raw annotation dicts for the output text. `no_finish` (Chat, streamed): the
    stream ends cleanly after the content with no finish reason, as llama.cpp's server ends one that
    failed after its headers were sent.
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
    no_finish: bool = False


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
    """Override the generated images: colour, pixel size (e.g. tiny for fast tests), delay, and the
    prompt the model says it drew (`revised_prompt` on each image, as image models may answer)."""

    rgb: tuple[int, int, int] | None = None
    size: tuple[int, int] | None = None
    delay_s: float = 0.0
    revised_prompt: str | None = None


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
