"""A Reply turned into a response's output items (hosted tool calls, the message with its citations,
function calls), and the stream events that build those items one by one."""

from __future__ import annotations

import asyncio
import base64
import copy
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

from ..png import encode_png
from .file_search import FakeVectorStore, cited_files, file_search_item, search
from .records import StoredContainerFile, StoredFile
from .script import FileSearchCall, ImageGenerationCall, Reply, WebSearchCall
from .tokens import DELTA_CHARS, Json, count_tokens, new_id, split_every, split_n, split_words


@dataclass
class Hosted:
    kind: Literal["web_search_call", "code_interpreter_call", "image_generation_call", "file_search_call"]
    final: Json
    code: str = ""
    partial_images: int = 0
    image_usage: tuple[int, int] | None = None
    """An image generation call's (input, output) tokens, for the response's `tool_usage`."""


@dataclass
class Rendered:
    """A Reply turned into final output items plus what streaming needs to replay them."""

    hosted: list[Hosted]
    text: str
    text_deltas: list[str]
    annotations: list[Json]
    refusal: str | None
    message_id: str
    calls: list[Json]

    def tool_usage(self) -> Json | None:
        """The response's `tool_usage` in the real shape: image generation's tokens summed over the
        calls that report them, web searches counted; None (omitted) when no drawing reports usage."""
        drawn = [hosted.image_usage for hosted in self.hosted if hosted.image_usage is not None]
        if not drawn:
            return None
        input_tokens = sum(usage[0] for usage in drawn)
        output_tokens = sum(usage[1] for usage in drawn)
        searches = sum(1 for hosted in self.hosted if hosted.kind == "web_search_call")
        return {
            "image_gen": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
                "output_tokens": output_tokens,
                "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
            "web_search": {"num_requests": searches},
        }

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
        return max(1, count_tokens(spoken + "".join(hosted.code for hosted in self.hosted)))


@dataclass
class ResponseRun:
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
    rendered: Rendered
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


def cite(text: str, anchor: str | None, link: str) -> tuple[str, int, int]:
    """Where a citation goes: over `anchor` if present in the text, else over an appended link."""
    if anchor and anchor in text:
        start = text.index(anchor)
        return text, start, start + len(anchor)
    text = f"{text} {link}" if text else link
    return text, len(text) - len(link), len(text)


def render_reply(
    reply: Reply,
    body: Json,
    containers: dict[str, dict[str, StoredContainerFile]],
    uploads: list[StoredFile] | None = None,
    *,
    searched: Sequence[FakeVectorStore] = (),
    files: Mapping[str, StoredFile] | None = None,
) -> Rendered:
    """Build the final output items of a Reply: hosted calls, the message with annotations, calls.

    `uploads`: the files the request gave the code interpreter (`container.file_ids`); the container
    a scripted run creates holds them under /mnt/data, as OpenAI's does. `searched`: the vector
    stores the request's file_search tool names, and `files` the uploads their files are.
    """
    include = set(body.get("include") or [])
    text = reply.text
    annotations: list[Json] = list(reply.annotations)
    hosted: list[Hosted] = []
    response_container: str | None = None
    for tool in reply.hosted:
        if isinstance(tool, WebSearchCall):
            action: Json = {"type": "search", "query": tool.query}
            if "web_search_call.action.sources" in include:
                action["sources"] = [{"type": "url", "url": c.url} for c in tool.citations]
            hosted.append(
                Hosted(
                    "web_search_call",
                    {
                        "id": new_id("ws"),
                        "type": "web_search_call",
                        "status": "completed",
                        "action": action,
                    },
                )
            )
            for citation in tool.citations:
                link = f"([{urlparse(citation.url).hostname or citation.title}]({citation.url}))"
                text, start, end = cite(text, citation.anchor, link)
                annotations.append(
                    {
                        "type": "url_citation",
                        "url": citation.url,
                        "title": citation.title,
                        "start_index": start,
                        "end_index": end,
                    }
                )
        elif isinstance(tool, ImageGenerationCall):
            hosted.append(_image_generation(tool))
        elif isinstance(tool, FileSearchCall):
            hits = search(searched, files or {}, tool.queries)
            hosted.append(Hosted("file_search_call", file_search_item(new_id("fs"), tool, hits, include)))
            for hit in cited_files(hits, tool.cite):
                annotations.append(
                    {
                        "type": "file_citation",
                        "file_id": hit.file_id,
                        "filename": hit.filename,
                        "index": len(text),
                    }
                )
        else:
            container_id = tool.container_id or response_container or new_id("cntr")
            response_container = response_container or container_id
            container = containers.setdefault(container_id, {})
            for upload in uploads or ():
                if all(held.filename != upload.filename for held in container.values()):
                    given = StoredContainerFile(
                        id=new_id("cfile"),
                        container_id=container_id,
                        filename=upload.filename,
                        data=upload.data,
                        created_at=int(time.time()),
                        source="user",
                    )
                    container[given.id] = given
            outputs: list[Json] = []
            if tool.logs:
                outputs.append({"type": "logs", "logs": tool.logs})
            for produced in [*tool.files, *tool.images]:
                stored = StoredContainerFile(
                    id=new_id("cfile"),
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
                text, start, end = cite(text, path, f"[{produced.filename}]({path})")
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
                "id": new_id("ci"),
                "type": "code_interpreter_call",
                "status": "completed",
                "code": tool.code,
                "container_id": container_id,
                "outputs": outputs if "code_interpreter_call.outputs" in include else None,
            }
            hosted.append(Hosted("code_interpreter_call", final, code=tool.code))
    annotations.sort(key=lambda a: int(a.get("start_index") or a.get("index") or 0))
    deltas = split_words(text) if reply.deltas is None else split_n(text, reply.deltas)
    calls = [
        {
            "id": new_id("fc"),
            "type": "function_call",
            "status": "completed",
            "call_id": fc.call_id or f"call_{secrets.token_hex(12)}",
            "name": fc.name,
            "arguments": fc.arguments_json(),
        }
        for fc in reply.calls
    ]
    return Rendered(
        hosted=hosted,
        text=text,
        text_deltas=deltas,
        annotations=annotations,
        refusal=reply.refusal,
        message_id=new_id("msg"),
        calls=calls,
    )


def _image_generation(tool: ImageGenerationCall) -> Hosted:
    width, height = tool.size
    image = tool.image if tool.image is not None else encode_png(width, height, tool.rgb)
    final: Json = {
        "id": new_id("ig"),
        "type": "image_generation_call",
        "status": "failed" if tool.failed else "completed",
        "result": None if tool.failed else base64.b64encode(image).decode(),
        "revised_prompt": tool.revised_prompt,
        "background": "opaque",
        "output_format": "png",
        "quality": "medium",
        "size": f"{width}x{height}",
    }
    return Hosted(
        "image_generation_call",
        final,
        partial_images=0 if tool.failed else tool.partial_images,
        image_usage=None if tool.failed else tool.usage,
    )


def hosted_events(index: int, hosted: Hosted) -> Iterator[Json]:
    final = hosted.final
    item_id = final["id"]
    if hosted.kind == "image_generation_call":
        added = {**final, "status": "in_progress", "result": None}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        where = {"item_id": item_id, "output_index": index}
        yield {"type": "response.image_generation_call.in_progress", **where}
        yield {"type": "response.image_generation_call.generating", **where}
        for partial in range(hosted.partial_images):
            yield {
                "type": "response.image_generation_call.partial_image",
                **where,
                "partial_image_index": partial,
                "partial_image_b64": final["result"],
                "background": final["background"],
                "output_format": final["output_format"],
                "quality": final["quality"],
                "size": final["size"],
            }
        if final["status"] == "completed":
            yield {"type": "response.image_generation_call.completed", **where}
    elif hosted.kind == "file_search_call":
        added = {**final, "status": "in_progress", "results": None}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        for phase in ("in_progress", "searching", "completed"):
            yield {"type": f"response.file_search_call.{phase}", "item_id": item_id, "output_index": index}
    elif hosted.kind == "web_search_call":
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


def message_events(index: int, rendered: Rendered, message: Json) -> Iterator[Json]:
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
            for delta in split_words(part["refusal"]):
                yield {"type": "response.refusal.delta", **where_part, "delta": delta}
            yield {"type": "response.refusal.done", **where_part, "refusal": part["refusal"]}
        yield {"type": "response.content_part.done", **where_part, "part": copy.deepcopy(part)}
    yield {"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(message)}


def function_call_events(index: int, fc: Json) -> Iterator[Json]:
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**fc, "status": "in_progress", "arguments": ""},
    }
    for piece in split_every(fc["arguments"], DELTA_CHARS):
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
