"""Files a person attaches in a conversation: which tool or part of the request each one reaches.

With the code interpreter on (the `responses` backend), every attachment it can read is uploaded
through the Files API and given to its container (`container.file_ids`), and the conversation keeps
it, so a later turn ("now make the bars red") still has it. Without it, a PDF goes into the message as
an `input_file` on `responses`, and as its text on `chat` (which cannot take files); text files are
inlined and images sent as today. Whatever cannot be used (too large, an unreadable type, a failed
upload) is said in one sentence the model reads and the person sees with the reply: never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

import openai
from openai import AsyncOpenAI

from bot.config import GuildSettings
from bot.documents import DocumentError, parse_document
from bot.engine.events import GeneratedFile
from bot.engine.turn import TurnFile
from bot.storage.conversation_files import ConversationFileStore
from bot.storage.conversations import ConversationRecord

log = logging.getLogger(__name__)

FILES_API_MAX_BYTES = 512 * 1024 * 1024
"""The Files API's own limit per file; `[discord] max_attachment_mb` sets a lower one."""
MAX_FILES_PER_MESSAGE = 10
"""Discord's own attachment limit per message: more never arrive, but a forwarded list might."""
MAX_CONVERSATION_FILES = 20
"""The newest files of a conversation its code interpreter is given on each turn."""
FILE_LIFETIME_S = 30 * 24 * 3600
"""Uploads expire at OpenAI after this (the Files API's longest `expires_after`), so a forgotten
conversation leaves nothing behind for ever; older files are no longer given to the container."""
FILE_LIFETIME_MARGIN_S = 3600
"""A file this close to its expiry is left out: it might be gone by the time the model runs."""
MAX_MESSAGE_FILE_BYTES = 64 * 1024 * 1024
"""What one message's attachments may add up to when downloaded (or the per-file limit, if larger):
they are read before the turn is admitted, so ten files at the per-file limit are not held at once."""
MAX_TEXT_ATTACHMENT_BYTES = 2 * 1024 * 1024
"""The largest text file inlined as text (without the code interpreter, which reads any size)."""
PREVIEW_CHARS = 2_000
"""How much of a text file given to the code interpreter the model also reads in the message."""

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_SUFFIXES = frozenset(
    {
        ".txt", ".md", ".markdown", ".rst", ".log", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml",
        ".ini", ".xml", ".html", ".css", ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp", ".rs", ".go",
        ".rb", ".sh", ".sql",
    }
)  # fmt: skip
DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx"})
CODE_INTERPRETER_SUFFIXES = frozenset(
    {
        ".c", ".cs", ".cpp", ".csv", ".doc", ".docx", ".html", ".java", ".json", ".md", ".pdf", ".php",
        ".pptx", ".py", ".rb", ".tex", ".txt", ".css", ".js", ".sh", ".ts", ".jpeg", ".jpg", ".gif",
        ".pkl", ".png", ".tar", ".xlsx", ".xls", ".xml", ".zip", ".tsv", ".parquet", ".yaml", ".yml",
        ".webp", ".toml", ".sql", ".log",
    }
)  # fmt: skip
"""What OpenAI's code interpreter reads (its documented file types, and plain data formats)."""

Route = Literal["image", "text", "code_interpreter", "input_file", "document_text", "refused"]


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What is known of an attachment before downloading it."""

    filename: str
    content_type: str
    size_bytes: int

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    @property
    def suffix(self) -> str:
        return PurePath(self.filename).suffix.lower()

    @property
    def is_image(self) -> bool:
        return self.media_type in IMAGE_TYPES

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith("text/") or self.suffix in TEXT_SUFFIXES


@dataclass(frozen=True, slots=True)
class AttachmentPlan:
    """Where one attachment goes: its routes (an image given to the code interpreter is also shown to
    the model), or the sentence saying why it is not used."""

    attachment: AttachmentInfo
    routes: tuple[Route, ...]
    refusal: str = ""

    @property
    def downloads(self) -> bool:
        """Whether the bot reads the file itself (an image alone goes to the model by its URL)."""
        return any(route not in ("image", "refused") for route in self.routes)


def code_interpreter_on(settings: GuildSettings) -> bool:
    """Whether this turn's files go to the code interpreter (a hosted tool: `responses` only)."""
    return settings.backend == "responses" and "code_interpreter" in settings.enabled_tools


def plan_attachments(
    attachments: Sequence[AttachmentInfo],
    settings: GuildSettings,
    *,
    max_bytes: int,
    max_total_bytes: int = MAX_MESSAGE_FILE_BYTES,
) -> list[AttachmentPlan]:
    """Each attachment's routes, by its type, the backend and the code interpreter, within the limits:
    `max_bytes` per file, and `max_total_bytes` (at least `max_bytes`) for all that one message has
    downloaded; files over it are refused in turn. Of two files of one message with the same name
    for the code interpreter, only the last is read (both would be /mnt/data/<name>)."""
    limit = min(max_bytes, FILES_API_MAX_BYTES)
    total_limit = max(max_total_bytes, limit)
    plans: list[AttachmentPlan] = []
    for number, attachment in enumerate(attachments):
        if number >= MAX_FILES_PER_MESSAGE:
            plans.append(
                _refused(attachment, f"at most {MAX_FILES_PER_MESSAGE} files of one message are read")
            )
        else:
            plans.append(_plan(attachment, settings, limit))
    last_by_name = {
        plan.attachment.filename: number
        for number, plan in enumerate(plans)
        if "code_interpreter" in plan.routes
    }
    downloaded = 0
    for number, plan in enumerate(plans):
        name = plan.attachment.filename
        if "code_interpreter" in plan.routes and last_by_name[name] != number:
            plans[number] = _refused(
                plan.attachment, "a later file of this message has the same name, and only that one is read"
            )
        elif plan.downloads:
            if downloaded + plan.attachment.size_bytes > total_limit:
                plans[number] = _refused(
                    plan.attachment,
                    f"the message's files together are over {megabytes(total_limit)}, the most read from"
                    " one message",
                )
            else:
                downloaded += plan.attachment.size_bytes
    return plans


def _plan(attachment: AttachmentInfo, settings: GuildSettings, limit: int) -> AttachmentPlan:
    as_file = attachment.size_bytes > limit
    too_large = _too_large(attachment, limit)
    pdf = attachment.suffix == ".pdf" or attachment.media_type == "application/pdf"
    document = pdf or attachment.suffix in DOCUMENT_SUFFIXES
    if code_interpreter_on(settings) and attachment.suffix in CODE_INTERPRETER_SUFFIXES:
        if as_file:
            return _refused(attachment, too_large)
        return AttachmentPlan(
            attachment, (*_shown_beside_interpreter(attachment, pdf, document), "code_interpreter")
        )
    if attachment.is_image:
        return AttachmentPlan(attachment, ("image",))
    if attachment.is_text:
        if attachment.size_bytes > MAX_TEXT_ATTACHMENT_BYTES:
            return _refused(attachment, _too_large(attachment, MAX_TEXT_ATTACHMENT_BYTES))
        return AttachmentPlan(attachment, ("text",))
    if document:
        if as_file:
            return _refused(attachment, too_large)
        if pdf and settings.backend == "responses":
            return AttachmentPlan(attachment, ("input_file",))
        return AttachmentPlan(attachment, ("document_text",))
    kind = attachment.suffix or attachment.media_type or "this type"
    if attachment.suffix in CODE_INTERPRETER_SUFFIXES and settings.backend == "responses":
        return _refused(
            attachment,
            f"the assistant cannot read {kind} files without the code interpreter, which is off here",
        )
    return _refused(attachment, f"the assistant cannot read {kind} files")


def _shown_beside_interpreter(attachment: AttachmentInfo, pdf: bool, document: bool) -> tuple[Route, ...]:
    """The model still reads what it could read without the code interpreter: an image, a text file's
    beginning, a PDF as a file (`responses` reads those itself), a DOCX's text."""
    if attachment.is_image:
        return ("image",)
    if attachment.is_text:
        return ("text",)
    if pdf:
        return ("input_file",)
    if document:
        return ("document_text",)
    return ()


def _too_large(attachment: AttachmentInfo, limit: int) -> str:
    return f"it is too large ({megabytes(attachment.size_bytes)}; the limit is {megabytes(limit)})"


def _refused(attachment: AttachmentInfo, why: str) -> AttachmentPlan:
    return AttachmentPlan(attachment, ("refused",), f"{attachment.filename} was not read: {why}.")


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def file_line(file: TurnFile) -> str:
    """What the model reads in the message about a file it is given (so it knows where to look)."""
    if file.use == "code_interpreter":
        return f"[Attached {file.filename}: given to the code interpreter as /mnt/data/{file.filename}]"
    return f"[Attached {file.filename}: included as a file]"


def text_limit_reached(filename: str) -> tuple[str, str]:
    """The block and the sentence for a file whose text is not read: the turn's text budget is spent."""
    return (
        f"[Attached {filename}: not read, the text limit was reached]",
        f"{filename} was not read: the message's attachments hold more text than the assistant reads.",
    )


def _fenced(text: str) -> str:
    return text.replace("```", "` ``")


def text_block(filename: str, data: bytes, budget: int, *, preview: bool) -> tuple[str, int, str | None]:
    """A text file as a fenced block within the remaining character budget: (the block, the characters
    it used, the sentence for the person if it was not read whole).

    `preview`: the file is in the code interpreter's container as well, so the model reads only its
    beginning (at most `PREVIEW_CHARS`, whole lines) to know what it holds; nothing is missing then,
    so there is no sentence, and nothing at all when the budget is spent."""
    text = data.decode("utf-8", errors="replace")
    if preview:
        room = min(budget, PREVIEW_CHARS)
        if room <= 0:
            return "", 0, None
        if len(text) <= room:
            return f"[Attached {filename}]\n```\n{_fenced(text)}\n```", len(text), None
        beginning = text[:room]
        beginning = beginning[: beginning.rfind("\n") + 1] or beginning  # whole lines, if any
        heading = f"[Attached {filename}, its beginning (the whole file is /mnt/data/{filename})]"
        block = f"{heading}\n```\n{_fenced(beginning)}\n```"
        return block, len(beginning), None
    return _within_budget(filename, "", text, budget)


async def document_text(
    filename: str, content_type: str, data: bytes, budget: int
) -> tuple[str, int, str | None]:
    """A PDF's or DOCX's text as a block for the message within the remaining `budget` characters:
    (the block, the characters it used, the sentence for the person when it was not read whole)."""
    if budget <= 0:  # not parsed at all: nothing of it would be read
        return _within_budget(filename, ", its text", "", budget)
    try:
        document = await asyncio.to_thread(parse_document, filename, data, content_type)
    except DocumentError as exc:
        return f"[Attached {filename}: could not be read]", 0, str(exc)
    return _within_budget(filename, ", its text", document.as_text(), budget)


def _within_budget(filename: str, label: str, text: str, budget: int) -> tuple[str, int, str | None]:
    """(the block, the characters used, the sentence when not read whole): the budget spent, the
    file is not read; over it, only its beginning is."""
    if budget <= 0:
        block, not_read = text_limit_reached(filename)
        return block, 0, not_read
    cut = len(text) > budget
    text = text[:budget]
    note = " (cut short)" if cut else ""
    block = f"[Attached {filename}{label}{note}]\n```\n{_fenced(text)}\n```"
    problem = f"Only the beginning of {filename} was read (the text limit)." if cut else None
    return block, len(text), problem


@dataclass(frozen=True, slots=True)
class UploadedFiles:
    """A turn's uploads: `input_file` ids for the message, and sentences for what failed."""

    input_file_ids: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()


class ConversationFiles:
    """Uploads a turn's files to OpenAI and remembers those of each conversation's code interpreter."""

    def __init__(
        self, client: AsyncOpenAI, store: ConversationFileStore, *, max_files: int = MAX_CONVERSATION_FILES
    ) -> None:
        self._client = client
        self._store = store
        self._max_files = max_files

    async def upload(self, record: ConversationRecord, files: Sequence[TurnFile]) -> UploadedFiles:
        """Upload the turn's files (once each, though a PDF goes both in the message and to the code
        interpreter); code interpreter files are kept with the conversation."""
        distinct = list({(file.filename, file.data): file for file in files}.values())
        uploads = await asyncio.gather(*(self._upload_one(file) for file in distinct))
        results = dict(zip(((file.filename, file.data) for file in distinct), uploads, strict=True))
        notices = [
            f"{file.filename} could not be given to the model: {problem}"
            for file, (file_id, problem) in zip(distinct, uploads, strict=True)
            if file_id is None
        ]
        input_ids: list[str] = []
        for file in files:
            file_id, _ = results[(file.filename, file.data)]
            if file_id is None:
                continue
            if file.use == "code_interpreter":
                await self._store.add(record.key, record.generation, file_id, file.filename, len(file.data))
            else:
                input_ids.append(file_id)
        return UploadedFiles(tuple(input_ids), tuple(notices))

    async def _upload_one(self, file: TurnFile) -> tuple[str | None, str]:
        """(the new file's id, "") or (None, why it failed)."""
        try:
            uploaded = await self._client.files.create(
                file=(file.filename, file.data, file.content_type or "application/octet-stream"),
                purpose="user_data",
                expires_after={"anchor": "created_at", "seconds": FILE_LIFETIME_S},
            )
        except openai.APIStatusError as exc:
            log.warning("Upload of %s refused: %s", file.filename, exc)
            return None, f"OpenAI refused the upload (HTTP {exc.status_code})."
        except openai.APIError as exc:
            log.warning("Upload of %s failed: %r", file.filename, exc)
            return None, "the upload to OpenAI failed."
        return uploaded.id, ""

    async def container_file_ids(self, record: ConversationRecord) -> list[str]:
        """The conversation's newest files (not near their expiry), oldest first."""
        files = await self._store.newest(record.key, record.generation, self._max_files)
        fresh_after = time.time() - FILE_LIFETIME_S + FILE_LIFETIME_MARGIN_S
        return [file.file_id for file in files if file.uploaded_at > fresh_after]


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What function tools made for one reply: files to attach, and a line about each for the reader."""

    files: tuple[GeneratedFile, ...] = ()
    notes: tuple[str, ...] = ()


class ToolFiles:
    """Files function tools made for the reply of a turn in progress (a drawing on the chat backend),
    by conversation: one turn runs at a time per conversation, and the backend takes them at its end."""

    def __init__(self) -> None:
        self._outputs: dict[str, ToolOutput] = {}

    def put(self, conversation_key: str, file: GeneratedFile, note: str | None = None) -> None:
        held = self._outputs.get(conversation_key, ToolOutput())
        notes = (*held.notes, note) if note else held.notes
        self._outputs[conversation_key] = ToolOutput((*held.files, file), notes)

    def count(self, conversation_key: str) -> int:
        return len(self._outputs.get(conversation_key, ToolOutput()).files)

    def take(self, conversation_key: str) -> ToolOutput:
        """The conversation's files and notes, forgotten here (the backend takes them as its turn ends,
        however it ends)."""
        return self._outputs.pop(conversation_key, ToolOutput())
