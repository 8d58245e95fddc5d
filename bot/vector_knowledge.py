"""A guild's knowledge kept in an OpenAI vector store (`knowledge_store = "openai"`).

Each guild has one vector store, created at OpenAI on its first file; its id and the files added to
it are in the database (`bot.storage.vector_stores`). A file goes through the Files API
(`purpose="assistants"`), is attached to the store, and is waited for until OpenAI has processed it;
conversations then search the store with OpenAI's hosted `file_search` tool, and /search asks the
store directly. Every refusal is one sentence for the member.

A store deleted at OpenAI (by someone in the organisation's dashboard) is marked lost once a turn or a
search confirms it gone (`VectorStoreRegistry.mark_lost`), and made again the next time a file is
added, and the member is told which earlier files were in the old store and must be added again: the
bot keeps no copy of them, and re-attaching files the dashboard user may have deleted on purpose would
be a surprise of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import openai
from openai import AsyncOpenAI
from openai.types.vector_stores import VectorStoreFile

from bot.engine.openai_errors import describe_error
from bot.errors import UserFacingError
from bot.features import FeatureOffError
from bot.storage.vector_stores import VectorStoreFileEntry, VectorStoreRegistry

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (
    ".c", ".cpp", ".cs", ".css", ".doc", ".docx", ".go", ".html", ".java", ".js", ".json", ".md",
    ".pdf", ".php", ".pptx", ".py", ".rb", ".sh", ".tex", ".ts", ".txt",
)  # fmt: skip
"""The file types OpenAI's file search reads (its documented list)."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""The Files API's limit for one file."""
PROCESSING_WAIT_S = 300.0
"""How long /remember waits for OpenAI to process a file before saying it is still being processed."""
MAX_SEARCH_RESULTS = 10
MAX_LOST_NAMES_SHOWN = 5
STORE_GONE = (
    "This server's OpenAI vector store was deleted at OpenAI; adding a file with /remember makes a new one."
)
FILE_LABEL_PREFIX = "F"
"""A vector-store file is "F3", a local knowledge entry "#3": the two numberings both start at 1."""


def file_label(entry_id: int) -> str:
    """How members see and give a file of the vector store (/forget entry:F3)."""
    return f"{FILE_LABEL_PREFIX}{entry_id}"


@dataclass(frozen=True, slots=True)
class AddedFile:
    """What adding a file did; `message` is what to show the member."""

    entry: VectorStoreFileEntry
    still_processing: bool = False
    """OpenAI had not finished processing it when the bot stopped waiting (it is searchable once done)."""
    lost: tuple[VectorStoreFileEntry, ...] = ()
    """Files of the guild's earlier store, which was gone at OpenAI: they must be added again."""

    @property
    def message(self) -> str:
        entry = self.entry
        text = (
            f"Added **{entry.filename}** ({_size(entry.size_bytes)}) to this server's OpenAI vector store"
            f" as file **{file_label(entry.id)}**"
        )
        if self.still_processing:
            text += "; OpenAI is still processing it, and conversations can search it once that is done."
        else:
            text += "; conversations can search it now."
        text += f" Find it with /search; remove it with /forget entry:{file_label(entry.id)}."
        if self.lost:
            names = ", ".join(e.filename for e in self.lost[:MAX_LOST_NAMES_SHOWN])
            more = len(self.lost) - MAX_LOST_NAMES_SHOWN
            if more > 0:
                names += f" and {more} more"
            text += (
                f"\nThis server's vector store had been deleted at OpenAI, so a new one was made: the"
                f" {len(self.lost)} file{'s' if len(self.lost) != 1 else ''} added before ({names})"
                " must be added again."
            )
        return text


@dataclass(frozen=True, slots=True)
class VectorSearchHit:
    """A passage the store found: its file (and the entry, when the bot added it) and its score."""

    filename: str
    score: float
    text: str
    entry: VectorStoreFileEntry | None


class VectorStoreGoneError(UserFacingError):
    """The guild's vector store no longer exists at OpenAI."""


class VectorKnowledge:
    """Add, list, search and forget the files of each guild's OpenAI vector store.

    `client` is OpenAI's; None means this bot has no OpenAI key, and every call raises `off_reason`.
    """

    def __init__(
        self,
        client: AsyncOpenAI | None,
        registry: VectorStoreRegistry,
        *,
        off_reason: str = "An OpenAI vector store needs an OpenAI API key this bot does not have.",
        processing_wait_s: float = PROCESSING_WAIT_S,
    ) -> None:
        self._client = client
        self._registry = registry
        self._off_reason = off_reason
        self._processing_wait_s = processing_wait_s
        self._creating: dict[int, asyncio.Lock] = {}  # per guild: one store creation at a time here

    def _openai(self) -> AsyncOpenAI:
        if self._client is None:
            raise FeatureOffError(self._off_reason)
        return self._client

    async def store_id(self, guild_id: int) -> str | None:
        """The guild's vector store, or None before its first file (nothing to search then)."""
        return await self._registry.store_id(guild_id)

    async def add_file(self, *, guild_id: int, user_id: int, filename: str, data: bytes) -> AddedFile:
        """Upload `data` and attach it to the guild's store (made on first use), waiting for OpenAI to
        process it. A file OpenAI cannot take is refused with one sentence and leaves nothing behind."""
        filename = PurePosixPath(filename.replace("\\", "/")).name.strip() or "file"
        check_file(filename, len(data))
        client = self._openai()
        store_id, lost = await self._store_for(guild_id)
        try:
            uploaded = await client.files.create(file=(filename, data), purpose="assistants")
        except openai.APIError as exc:
            raise UserFacingError(_upload_error(exc, filename)) from exc
        record = functools.partial(
            self._registry.add_file,
            guild_id=guild_id,
            file_id=uploaded.id,
            filename=filename,
            size_bytes=len(data),
            author_id=user_id,
        )
        entry = await record(store_id=store_id)
        try:
            try:
                attached = await self._attach(client, uploaded.id, store_id)
            except openai.NotFoundError:
                if await self._store_exists(client, store_id):
                    raise
                store_id, replaced = await self._replace_store(client, guild_id, store_id, entry)
                lost += replaced
                entry = await record(store_id=store_id)  # the same file, in the store made anew
                attached = await self._attach(client, uploaded.id, store_id)
        except TimeoutError:
            log.info("File %s of guild %s is still being processed", uploaded.id, guild_id)
            return AddedFile(entry, still_processing=True, lost=lost)
        except (openai.APIError, UserFacingError) as exc:
            await self._discard(client, entry)
            if isinstance(exc, UserFacingError):
                raise
            raise UserFacingError(_upload_error(exc, filename)) from exc
        if attached.status != "completed":
            await self._discard(client, entry)
            reason = (
                attached.last_error.message if attached.last_error else f"its status is {attached.status}"
            )
            raise UserFacingError(f"OpenAI could not read {filename}: {reason.rstrip('.')}.")
        await self._registry.set_status(entry.id, "completed")
        return AddedFile(dataclasses.replace(entry, status="completed"), lost=lost)

    async def forget(
        self, *, guild_id: int, entry_id: int, user_id: int, is_admin: bool
    ) -> VectorStoreFileEntry:
        """Remove a file from the store and from OpenAI's files; only who added it or an admin may."""
        entry = await self._registry.get_file(guild_id, entry_id)
        missing = f"There is no file {file_label(entry_id)} in this server's OpenAI vector store."
        if entry is None:
            raise UserFacingError(missing)
        if entry.author_id != user_id and not is_admin:
            raise UserFacingError(
                f"File {file_label(entry_id)} was added by someone else; only they or an admin can remove it."
            )
        client = self._openai()
        try:
            await _gone_is_fine(
                client.vector_stores.files.delete(entry.file_id, vector_store_id=entry.store_id)
            )
            await _gone_is_fine(client.files.delete(entry.file_id))
        except openai.APIError as exc:
            raise UserFacingError(
                f"OpenAI could not remove {entry.filename} now ({_reason(exc)}); try /forget again later."
            ) from exc
        removed = await self._registry.remove_file(guild_id, entry_id)
        if removed is None:  # someone else removed it meanwhile
            raise UserFacingError(missing)
        return removed

    async def files(
        self, guild_id: int, *, author_id: int | None = None, matching: str = "", limit: int = 25
    ) -> list[VectorStoreFileEntry]:
        """The guild's files, newest first (someone's own, or names matching what was typed)."""
        return await self._registry.files(guild_id, author_id=author_id, matching=matching, limit=limit)

    async def file_count(self, guild_id: int) -> int:
        return await self._registry.file_count(guild_id)

    async def search(self, *, guild_id: int, query: str, count: int) -> list[VectorSearchHit]:
        """The store's passages closest to `query`, as OpenAI's vector store search ranks them."""
        query = query.strip()
        if not query:
            raise UserFacingError("Give something to search for.")
        store_id = await self._registry.store_id(guild_id)
        if store_id is None:
            if await self._registry.file_count(guild_id):  # its store was marked lost
                raise VectorStoreGoneError(STORE_GONE)
            return []
        client = self._openai()
        count = max(1, min(count, MAX_SEARCH_RESULTS))
        try:
            page = await client.vector_stores.search(store_id, query=query, max_num_results=count)
        except openai.NotFoundError as exc:
            if not await self._store_exists(client, store_id):
                await self._registry.mark_lost(guild_id, store_id)
            raise VectorStoreGoneError(STORE_GONE) from exc
        except openai.APIError as exc:
            raise UserFacingError(f"OpenAI could not search this server's files: {_reason(exc)}") from exc
        hits: list[VectorSearchHit] = []
        for result in page.data:
            text = "\n".join(part.text for part in result.content).strip()
            entry = await self._registry.file_by_openai_id(guild_id, result.file_id)
            hits.append(VectorSearchHit(result.filename, result.score, text, entry))
        return hits

    async def _store_for(self, guild_id: int) -> tuple[str, tuple[VectorStoreFileEntry, ...]]:
        """The guild's store, created at OpenAI (once, even with several processes) if it has none;
        with the files of a store marked lost before (they must be added again)."""
        existing = await self._registry.store_id(guild_id)
        if existing is not None:
            return existing, ()
        client = self._openai()
        async with self._creating.setdefault(guild_id, asyncio.Lock()):
            existing = await self._registry.store_id(guild_id)
            if existing is not None:
                return existing, ()
            created = await self._create_store(client, guild_id)
            kept = await self._registry.claim_store(guild_id, created)
        if kept != created:  # another process made one first: use theirs
            await _gone_is_fine(client.vector_stores.delete(created))
            return kept, ()
        lost = tuple(await self._registry.take_files_of_other_stores(guild_id, kept))
        await _delete_copies(client, lost)
        return kept, lost

    async def _create_store(self, client: AsyncOpenAI, guild_id: int) -> str:
        try:
            store = await client.vector_stores.create(
                name=f"Discord server {guild_id} knowledge", metadata={"guild_id": str(guild_id)}
            )
        except openai.APIError as exc:
            raise UserFacingError(
                f"OpenAI could not make this server's vector store: {_reason(exc)}"
            ) from exc
        log.info("Created vector store %s for guild %s", store.id, guild_id)
        return store.id

    async def _attach(self, client: AsyncOpenAI, file_id: str, store_id: str) -> VectorStoreFile:
        return await client.vector_stores.files.create_and_poll(
            file_id, vector_store_id=store_id, max_wait_seconds=self._processing_wait_s
        )

    async def _store_exists(self, client: AsyncOpenAI, store_id: str) -> bool:
        try:
            await client.vector_stores.retrieve(store_id)
        except openai.NotFoundError:
            return False
        return True

    async def _replace_store(
        self, client: AsyncOpenAI, guild_id: int, old_store_id: str, adding: VectorStoreFileEntry
    ) -> tuple[str, tuple[VectorStoreFileEntry, ...]]:
        """A new store for a guild whose store is gone at OpenAI; the old store's entries are dropped
        (their Files API copies deleted) and returned, but for the file being added."""
        created = await self._create_store(client, guild_id)
        lost = await self._registry.replace_store(guild_id, old_store_id, created)
        if not lost:  # replaced by another process meanwhile, or marked lost (the guild has no store)
            current = await self._registry.claim_store(guild_id, created)
            if current != created:  # another process's store: use theirs
                await _gone_is_fine(client.vector_stores.delete(created))
                await self._registry.remove_file(guild_id, adding.id)
                return current, ()
            lost = await self._registry.take_files_of_other_stores(guild_id, created)
        log.warning(
            "Vector store %s of guild %s was gone at OpenAI; made %s", old_store_id, guild_id, created
        )
        earlier = tuple(e for e in lost if e.id != adding.id)
        await _delete_copies(client, earlier)
        return created, earlier

    async def _discard(self, client: AsyncOpenAI, entry: VectorStoreFileEntry) -> None:
        """Undo a file that could not be added: out of the store, the Files API and the database."""
        try:
            await _gone_is_fine(
                client.vector_stores.files.delete(entry.file_id, vector_store_id=entry.store_id)
            )
            await _gone_is_fine(client.files.delete(entry.file_id))
        except openai.APIError:
            log.warning("Could not delete file %s after it failed", entry.file_id, exc_info=True)
        await self._registry.remove_file(entry.guild_id, entry.id)


def check_file(filename: str, size_bytes: int) -> None:
    """Refuse, with one sentence, a file OpenAI's file search would not take (before any upload)."""
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserFacingError(
            f"OpenAI's file search cannot read {suffix or 'files without an extension'}"
            f" ({filename}); it takes {', '.join(SUPPORTED_SUFFIXES)}."
        )
    if size_bytes == 0:
        raise UserFacingError(f"{filename} is empty.")
    if size_bytes > MAX_FILE_BYTES:
        raise UserFacingError(
            f"{filename} is too large for OpenAI ({_size(size_bytes)}; at most {_size(MAX_FILE_BYTES)})."
        )


async def _delete_copies(client: AsyncOpenAI, lost: Sequence[VectorStoreFileEntry]) -> None:
    """The Files API copies of a lost store's files: nothing can search them any more."""
    for entry in lost:
        try:
            await _gone_is_fine(client.files.delete(entry.file_id))
        except openai.APIError:
            log.warning("Could not delete file %s of a lost vector store", entry.file_id, exc_info=True)


async def _gone_is_fine(call: Awaitable[object]) -> None:
    """Await a delete; one already gone at OpenAI is what was wanted."""
    with contextlib.suppress(openai.NotFoundError):
        await call


def _reason(exc: BaseException) -> str:
    return describe_error(exc, model="")[1].rstrip(".")


def _upload_error(exc: openai.APIError, filename: str) -> str:
    if isinstance(exc, openai.BadRequestError):
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        return f"OpenAI refused {filename}: {str(message or exc.message).rstrip('.')}."
    return f"OpenAI could not take {filename}: {_reason(exc)}."


def _size(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.0f} KB"
    return f"{n_bytes} B"
