"""What OpenAI's hosted tools did in one turn: code runs, web sources, generated files and drawings.

The Responses backend hands each output item of the stream to `HostedOutputs`, which turns hosted
calls into activity events and keeps what the reply should show; at the end of the turn
`fetch_files` downloads the files the code interpreter made (cited with `container_file_citation`
or returned as image outputs) and decodes the images the image generation tool drew (base64 in the
item's `result`), each at most once and never more than a size cap into memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from openai import AsyncOpenAI
from openai.types.responses import (
    Response,
    ResponseCodeInterpreterToolCall,
    ResponseFileSearchToolCall,
    ResponseFunctionWebSearch,
    ResponseOutputMessage,
)
from openai.types.responses.response_code_interpreter_tool_call import OutputImage, OutputLogs
from openai.types.responses.response_function_web_search import ActionSearch
from openai.types.responses.response_output_item import ImageGenerationCall
from openai.types.responses.response_output_text import (
    AnnotationContainerFileCitation,
    AnnotationFileCitation,
    AnnotationURLCitation,
    ResponseOutputText,
)

from bot.engine.events import (
    Citation,
    CodeRun,
    GeneratedFile,
    ToolFinished,
    ToolStarted,
    TurnEvent,
    Usage,
)
from bot.hosted_tools import CODE_INTERPRETER, FILE_SEARCH, IMAGE_GENERATION, WEB_SEARCH

log = logging.getLogger(__name__)

MAX_GENERATED_FILE_BYTES = 25 * 1024 * 1024
"""A generated file larger than this is named in the reply, not downloaded (Discord's biggest upload
limit is larger, but a bot holding many such files in memory at once is not worth it)."""
MAX_GENERATED_FILES = 10
"""Discord's attachments per message: more files are named, not downloaded."""
IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
DRAWING_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif", "svg": ".svg"}
IMAGE_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
"""Output tokens of one 1024x1024 image by quality (OpenAI's published figures for GPT image models):
the estimate for drawings of a response that does not report their usage (`tool_usage.image_gen`)."""
MAX_REVISED_PROMPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class Drawing:
    """An image the image generation tool drew: base64 as it came, and what it was drawn from."""

    result: str
    output_format: str
    revised_prompt: str | None
    quality: str | None


@dataclass(frozen=True, slots=True)
class ContainerFileRef:
    """A file in a code interpreter container, as a `container_file_citation` names it."""

    container_id: str
    file_id: str
    filename: str


@dataclass
class HostedOutputs:
    """Collected over every model call of a turn, in the order the model produced them."""

    code_runs: list[CodeRun] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    container_files: dict[tuple[str, str], ContainerFileRef] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)
    drawings: list[Drawing] = field(default_factory=list)

    def started(self, item: object) -> ToolStarted | None:
        """The activity line for a hosted call that just began (None for other items)."""
        if isinstance(item, ResponseCodeInterpreterToolCall):
            return ToolStarted(item.id, CODE_INTERPRETER.name, CODE_INTERPRETER.activity)
        if isinstance(item, ResponseFunctionWebSearch):
            return ToolStarted(item.id, WEB_SEARCH.name, WEB_SEARCH.activity)
        if isinstance(item, ResponseFileSearchToolCall):
            return ToolStarted(item.id, FILE_SEARCH.name, FILE_SEARCH.activity)
        if isinstance(item, ImageGenerationCall):
            return ToolStarted(item.id, IMAGE_GENERATION.name, IMAGE_GENERATION.activity)
        return None

    def drawing_notes(self) -> tuple[str, ...]:
        """The prompt each drawing was made from, when the tool says (one line each)."""
        return tuple(drawing_note(d.revised_prompt) for d in self.drawings if d.revised_prompt)

    def finished(self, item: object) -> Iterator[TurnEvent]:
        """Events for a finished output item, keeping what the reply will show."""
        if isinstance(item, ResponseCodeInterpreterToolCall):
            ok = item.status == "completed"
            yield ToolFinished(item.id, CODE_INTERPRETER.name, ok, "" if ok else "The code run failed")
            logs: list[str] = []
            for output in item.outputs or ():
                if isinstance(output, OutputLogs):
                    logs.append(output.logs)
                elif isinstance(output, OutputImage):
                    self.image_urls.append(output.url)
            run = CodeRun(item.id, item.code or "", "\n".join(logs))
            self.code_runs.append(run)
            yield run
        elif isinstance(item, ResponseFunctionWebSearch):
            ok = item.status == "completed"
            summary = _search_summary(item) if ok else "The web search failed"
            yield ToolFinished(item.id, WEB_SEARCH.name, ok, summary, arguments=_search_query(item))
        elif isinstance(item, ImageGenerationCall):
            ok = item.status == "completed" and bool(item.result)
            summary = "Drew an image" if ok else _drawing_problem(item)
            yield ToolFinished(
                item.id, IMAGE_GENERATION.name, ok, summary, arguments=item.revised_prompt or ""
            )
            if ok and item.result:
                self.drawings.append(
                    Drawing(item.result, item.output_format or "png", item.revised_prompt, item.quality)
                )
        elif isinstance(item, ResponseFileSearchToolCall):
            ok = item.status == "completed"
            summary = _file_search_summary(item) if ok else "The knowledge base search failed"
            yield ToolFinished(item.id, FILE_SEARCH.name, ok, summary, arguments=", ".join(item.queries))
        elif isinstance(item, ResponseOutputMessage):
            self._read_annotations(item)

    def _read_annotations(self, message: ResponseOutputMessage) -> None:
        for part in message.content:
            if not isinstance(part, ResponseOutputText):
                continue
            for annotation in part.annotations:
                if isinstance(annotation, AnnotationURLCitation):
                    citation = Citation(annotation.title, annotation.url)
                    if citation.url not in {c.url for c in self.citations}:
                        self.citations.append(citation)
                elif isinstance(annotation, AnnotationFileCitation):
                    citation = Citation(annotation.filename, file_id=annotation.file_id)
                    if citation.file_id not in {c.file_id for c in self.citations}:
                        self.citations.append(citation)
                elif isinstance(annotation, AnnotationContainerFileCitation):
                    key = (annotation.container_id, annotation.file_id)
                    self.container_files.setdefault(
                        key,
                        ContainerFileRef(annotation.container_id, annotation.file_id, annotation.filename),
                    )


def drawing_usage(response: Response | None, drawings: Sequence[Drawing]) -> Usage:
    """What one model call's image generation cost (it is not in the response's `usage`): what the
    response reports in `tool_usage.image_gen`, or, where it reports nothing for the call's
    `drawings`, an estimate by their quality (medium if unsaid)."""
    tool_usage = response.tool_usage if response is not None else None
    if tool_usage is not None and (tool_usage.image_gen.total_tokens or not drawings):
        return Usage(tool_usage.image_gen.input_tokens, tool_usage.image_gen.output_tokens)
    medium = IMAGE_OUTPUT_TOKENS["medium"]
    return Usage(0, sum(IMAGE_OUTPUT_TOKENS.get(d.quality or "", medium) for d in drawings))


def drawing_note(revised_prompt: str) -> str:
    """The line under a reply saying what prompt a drawing was made from (the model may rewrite it)."""
    return f"Image drawn from: {_clip(revised_prompt, MAX_REVISED_PROMPT_CHARS)}"


def _drawing_problem(item: ImageGenerationCall) -> str:
    if item.error is not None and item.error.code == "moderation_blocked":
        return "The image was refused under the image model's content policy"
    return "The image could not be drawn"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _file_search_summary(item: ResponseFileSearchToolCall) -> str:
    query = ", ".join(f"“{query}”" for query in item.queries)
    found = f"; {len(item.results)} passages found" if item.results is not None else ""
    return f"Searched the knowledge base for {query}{found}" if query else "Searched the knowledge base"


def _search_query(item: ResponseFunctionWebSearch) -> str:
    """What the web search looked for ("" when its action was not a search, e.g. opening a page)."""
    action = item.action
    if isinstance(action, ActionSearch):
        return action.query or ", ".join(action.queries or ())
    return ""


def _search_summary(item: ResponseFunctionWebSearch) -> str:
    query = _search_query(item)
    return f"Searched the web for “{query}”" if query else "Searched the web"


async def fetch_files(
    client: AsyncOpenAI,
    outputs: HostedOutputs,
    *,
    max_bytes: int = MAX_GENERATED_FILE_BYTES,
    max_files: int = MAX_GENERATED_FILES,
) -> tuple[GeneratedFile, ...]:
    """The turn's generated files: cited container files first, then image outputs not among them,
    then the drawings of the image generation tool.

    A file that cannot be had (too large, one too many, a failed download) is returned named, with
    its `problem`, so the reply can say so; nothing here raises for a file.
    """
    refs = list(outputs.container_files.values())
    fetched = list(await asyncio.gather(*(_download(client, ref, max_bytes) for ref in refs[:max_files])))
    fetched.extend(GeneratedFile(_safe_name(ref.filename), b"", "too_many") for ref in refs[max_files:])
    seen = {hashlib.sha256(file.data).digest() for file in fetched if file.data}
    images = 0
    for mime, data in _decode_images(outputs.image_urls):
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue  # the same picture as a cited file (the code interpreter reports both)
        seen.add(digest)
        images += 1
        name = f"image-{images}{IMAGE_SUFFIXES.get(mime, '.png')}"
        fetched.append(_kept(name, data, already=len(fetched), max_files=max_files, max_bytes=max_bytes))
    for number, drawing in enumerate(outputs.drawings, start=1):
        name = f"drawing-{number}{DRAWING_SUFFIXES.get(drawing.output_format, '.png')}"
        try:
            data = base64.b64decode(drawing.result, validate=True)
        except (binascii.Error, ValueError):
            log.warning("Skipping a drawing with broken base64")
            fetched.append(GeneratedFile(name, b"", "unavailable"))
            continue
        fetched.append(_kept(name, data, already=len(fetched), max_files=max_files, max_bytes=max_bytes))
    return tuple(fetched)


def _kept(name: str, data: bytes, *, already: int, max_files: int, max_bytes: int) -> GeneratedFile:
    """A file the model made, within the reply's limits: the number of files it may carry (`already`
    taken) and the size of one; past either, only its name and why."""
    if already >= max_files:
        return GeneratedFile(name, b"", "too_many")
    if len(data) > max_bytes:
        return GeneratedFile(name, b"", "too_large", size_bytes=len(data))
    return GeneratedFile(name, data)


async def _download(client: AsyncOpenAI, ref: ContainerFileRef, max_bytes: int) -> GeneratedFile:
    """One container file, streamed so a file over `max_bytes` is given up without holding it."""
    name = _safe_name(ref.filename)
    content = client.containers.files.content.with_streaming_response
    try:
        async with content.retrieve(ref.file_id, container_id=ref.container_id) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                return GeneratedFile(name, b"", "too_large", size_bytes=int(declared))
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.iter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    return GeneratedFile(name, b"", "too_large")
                chunks.append(chunk)
            return GeneratedFile(name, b"".join(chunks))
    except Exception as exc:  # a file that cannot be had is named in the reply, never a failed turn
        log.warning(
            "Could not download %s (%s) from container %s: %r", name, ref.file_id, ref.container_id, exc
        )
        return GeneratedFile(name, b"", "unavailable")


def _decode_images(urls: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(mime type, bytes) of each `data:` URL; other URLs are not fetched (nothing says they are safe)."""
    for url in urls:
        header, comma, payload = url.partition(",")
        if not (comma and header.startswith("data:") and header.endswith(";base64")):
            log.info("Skipping a code interpreter image that is not a data URL")
            continue
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            log.warning("Skipping a code interpreter image with broken base64")
            continue
        yield header.removeprefix("data:").removesuffix(";base64").lower(), data


def _safe_name(filename: str) -> str:
    """The file's own name, without the sandbox folders it came from."""
    return PurePosixPath(filename.replace("\\", "/")).name.strip() or "file"
