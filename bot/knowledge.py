"""A guild's knowledge: chunk what members ask the bot to remember, embed it, find it again.

Chunking keeps paragraphs together and repeats the end of each chunk at the start of the next, so a
fact split across a boundary is still found. Vectors live in SQLite (the truth) and in a per-guild
in-memory `VectorIndex` per embedding space (see `bot/vector_index.py` for why), keyed by guild, model
and dimensions: a query is only ever compared with vectors of the model and size it was embedded with.

A document (`bot/documents.py`) is chunked section by section, so a chunk never spans two pages or two
headings; each chunk is embedded with its heading path in front and stored with its page and headings,
so a hit is cited as "handbook.pdf, p. 12 (Safety › Fire exits)".
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import openai
from openai import AsyncOpenAI

from bot.documents import ParsedDocument, heading_path
from bot.engine.openai_errors import describe_error
from bot.errors import UserFacingError
from bot.features import FeatureOffError
from bot.storage import KnowledgeEntry, Storage
from bot.storage.knowledge import DocumentFile, EmbeddingSpace, KnowledgeStore, NewChunk, VectorRows
from bot.vector_index import DimensionMismatchError, VectorIndex
from bot.vector_knowledge import FILE_LABEL_PREFIX

log = logging.getLogger(__name__)

DEFAULT_KNOWLEDGE_MEMORY_BYTES = 1024 << 20
SpaceKey = tuple[int, str, int]  # (guild id, embedding model, dimensions)
Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in all)

MAX_CHUNK_CHARS = 1500  # ~350 tokens: small enough to be specific, big enough to carry context
CHUNK_OVERLAP_CHARS = 200
EMBEDDING_BATCH_SIZE = 96  # inputs per embeddings.create call (the API takes up to 2048)
MAX_REMEMBER_CHARS = 200_000
MAX_QUERY_CHARS = 2000
MAX_SEARCH_RESULTS = 10
LOAD_PAGE_ENTRIES = 100  # entries (up to ~150 chunks each) read per query when loading an index
TITLE_CHARS = 80

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"[.!?…:;][\"'”’)\]]*$")

# How good a place to end a chunk the gap after a word is.
_BREAK_NONE, _BREAK_WORD, _BREAK_LINE, _BREAK_PARAGRAPH = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Chunk:
    """`text` is exactly `source[start:end]`."""

    start: int
    end: int
    text: str


def chunk_text(
    text: str, *, max_chars: int = MAX_CHUNK_CHARS, overlap_chars: int = CHUNK_OVERLAP_CHARS
) -> list[Chunk]:
    """Split `text` into chunks of at most `max_chars`, preferring paragraph, then sentence ends.

    Guarantees: every non-blank character is in some chunk; each chunk is a slice of `text` that
    starts and ends on a non-blank character; chunk starts strictly increase. Each chunk after the
    first starts with the last whole words of the previous chunk, at most `overlap_chars` of them
    (fewer when the chunk would exceed `max_chars`). A word longer than `max_chars - overlap_chars`
    is cut into pieces of that length.
    """
    if max_chars < 2 or not 0 <= overlap_chars <= max_chars // 2:
        raise ValueError("need max_chars >= 2 and 0 <= overlap_chars <= max_chars // 2")
    budget = max_chars - overlap_chars  # the new text of a chunk
    units = _units(text, budget)
    if not units:
        return []
    ranks = [_break_rank(text, units, i) for i in range(len(units))]
    chunks: list[Chunk] = []
    first = 0
    previous: tuple[int, int] | None = None  # (first unit, last unit) of the last chunk
    while first < len(units):
        body_start = units[first][0]
        last = first
        while last + 1 < len(units) and units[last + 1][1] - body_start <= budget:
            last += 1
        if last + 1 < len(units):
            last = _best_break(units, ranks, first, last, min_chars=budget // 3)
        body_end = units[last][1]
        start = body_start
        if previous is not None:
            previous_first, previous_last = previous
            for unit in range(previous_last, previous_first, -1):
                candidate = units[unit][0]
                if units[previous_last][1] - candidate > overlap_chars or body_end - candidate > max_chars:
                    break
                start = candidate
        chunks.append(Chunk(start, body_end, text[start:body_end]))
        previous = (_unit_at(units, start, first), last)
        first = last + 1
    return chunks


def _units(text: str, max_len: int) -> list[tuple[int, int]]:
    """Words as (start, end), words longer than `max_len` cut into pieces."""
    units: list[tuple[int, int]] = []
    for match in re.finditer(r"\S+", text):
        start, end = match.span()
        while end - start > max_len:
            units.append((start, start + max_len))
            start += max_len
        units.append((start, end))
    return units


def _break_rank(text: str, units: list[tuple[int, int]], index: int) -> int:
    if index + 1 == len(units):
        return _BREAK_PARAGRAPH
    end, next_start = units[index][1], units[index + 1][0]
    gap = text[end:next_start]
    if not gap:
        return _BREAK_NONE  # inside a word that was cut
    if _PARAGRAPH_BREAK.search(gap):
        return _BREAK_PARAGRAPH
    if "\n" in gap or _SENTENCE_END.search(text[units[index][0] : end]):
        return _BREAK_LINE
    return _BREAK_WORD


def _best_break(
    units: list[tuple[int, int]], ranks: list[int], first: int, last: int, *, min_chars: int
) -> int:
    """The last unit of the chunk: the strongest break that leaves at least `min_chars`, latest first."""
    start = units[first][0]
    best = last
    best_rank = -1
    for index in range(last, first - 1, -1):
        if units[index][1] - start < min_chars and best_rank >= 0:
            break
        if ranks[index] > best_rank:
            best, best_rank = index, ranks[index]
    return best


def _unit_at(units: list[tuple[int, int]], start: int, hint: int) -> int:
    index = hint
    while index > 0 and units[index][0] > start:
        index -= 1
    return index


@dataclass(frozen=True, slots=True)
class DocumentChunk:
    """A chunk of one section of a document: on one page (if it has pages), under one heading path."""

    text: str
    page: int | None = None
    headings: tuple[str, ...] = ()
    page_label: str | None = None  # the page's printed number, where the PDF has labels

    def embedding_input(self) -> str:
        """What is embedded: the headings give a passage the context its words may lack."""
        return f"{heading_path(self.headings)}\n\n{self.text}" if self.headings else self.text


def chunk_document(
    document: ParsedDocument, *, max_chars: int = MAX_CHUNK_CHARS, overlap_chars: int = CHUNK_OVERLAP_CHARS
) -> list[DocumentChunk]:
    """`chunk_text` within each section: chunks keep their section's page and headings, and the overlap
    never reaches back into another page or heading."""
    return [
        DocumentChunk(chunk.text, section.page, section.headings, section.page_label)
        for section in document.sections
        for chunk in chunk_text(section.text, max_chars=max_chars, overlap_chars=overlap_chars)
    ]


def citation(
    source: str, page: int | None = None, headings: Sequence[str] = (), page_label: str | None = None
) -> str:
    """How a passage is cited: "handbook.pdf, p. 12 (Safety › Fire exits)", by the page's printed
    label where it has one (front matter numbered i, ii, ... puts printed p. 12 at the 16th page)."""
    shown = page_label or (None if page is None else str(page))
    cited = source if shown is None else f"{source}, p. {shown}"
    return f"{cited} ({heading_path(headings)})" if headings else cited


def title_of(text: str) -> str:
    """A short label for an entry: its first line, cut at a word."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = line.lstrip("#>*- ").strip() or line
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


# ---------------------------------------------------------------------------------------- references

MAX_ENTRY_ID = (1 << 63) - 1  # a database integer
_ENTRY_REFERENCE = re.compile(rf"#?\s*({FILE_LABEL_PREFIX}?)\s*(\d{{1,19}})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class EntryReference:
    """What /forget was given: a local entry ("12", "#12") or a vector-store file ("F3")."""

    entry_id: int
    in_vector_store: bool


def parse_entry_reference(text: str) -> EntryReference:
    """The entry `text` names, whatever store the guild uses now: the prefix, not the setting, says
    which (both numberings start at 1, so a bare number must never reach the other store)."""
    match = _ENTRY_REFERENCE.fullmatch(text.strip())
    if match is None or not 0 < int(match.group(2)) <= MAX_ENTRY_ID:
        raise UserFacingError(
            "Give the entry's number (12 or #12), or a vector-store file's (F3); pick one from the list."
        )
    return EntryReference(int(match.group(2)), bool(match.group(1)))


# ------------------------------------------------------------------------------------------- service


@dataclass(frozen=True, slots=True)
class Remembered:
    entry: KnowledgeEntry
    tokens: int


@dataclass(frozen=True, slots=True)
class SearchHit:
    entry: KnowledgeEntry
    chunk_id: int
    ordinal: int
    text: str
    score: float
    page: int | None = None
    headings: tuple[str, ...] = ()
    page_label: str | None = None

    @property
    def citation(self) -> str:
        """The file with the page and headings, or the note's title."""
        if self.entry.file_type is None:
            return self.entry.title
        return citation(self.entry.source, self.page, self.headings, self.page_label)


@dataclass(frozen=True, slots=True)
class SearchResults:
    hits: list[SearchHit]
    model: str
    dims: int
    tokens: int
    other_spaces: list[EmbeddingSpace]  # entries embedded with another model or size: not searched

    @property
    def skipped_entries(self) -> int:
        return sum(space.entries for space in self.other_spaces)


class EmbeddingFailedError(UserFacingError):
    """Embedding stopped part way; `tokens` were spent on the batches that were embedded before."""

    def __init__(self, message: str, tokens: int = 0) -> None:
        super().__init__(message)
        self.tokens = tokens


class KnowledgeSpaceMismatchError(UserFacingError):
    """Everything the guild stored was embedded in another space than the one searches use now."""


@dataclass(frozen=True, slots=True)
class _Embedded:
    vectors: npt.NDArray[np.float32]
    tokens: int

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])


def space_name(model: str, server: str | None) -> str:
    """What vectors are stored under: the model, and the server that embedded them unless OpenAI.

    Two servers may give one name to different models (or an OpenAI name to a local one), so vectors
    from a chat server are never searched together with OpenAI's or another server's.
    """
    return model if server is None else f"{model} @ {server.rstrip('/')}"


class KnowledgeBase:
    """Remember, search and forget per guild; holds no state of its own (the indexes are process state).

    `client` is where texts are embedded (OpenAI, or the chat server); None means knowledge is off on
    this bot, and remembering or searching raises `off_reason`. `served_model` is the one model a chat
    server embeds with (used instead of each guild's `embedding_model`); `server` is its address.
    """

    def __init__(
        self,
        client: AsyncOpenAI | None,
        storage: Storage,
        indexes: KnowledgeIndexes,
        *,
        batch_size: int = EMBEDDING_BATCH_SIZE,
        served_model: str | None = None,
        server: str | None = None,
        off_reason: str = "Knowledge is off on this bot.",
    ) -> None:
        self._client = client
        self._storage = storage
        self._indexes = indexes
        self._batch_size = batch_size
        self._served_model = served_model
        self._server = server
        self._off_reason = off_reason

    def _embedding_model(self, guild_model: str) -> tuple[AsyncOpenAI, str, str]:
        """(client, the model to ask it for, the space the vectors belong to) or the feature's refusal."""
        if self._client is None:
            raise FeatureOffError(self._off_reason)
        model = self._served_model or guild_model
        return self._client, model, space_name(model, self._server)

    async def remember(
        self,
        *,
        guild_id: int,
        author_id: int,
        text: str,
        model: str,
        source: str = "text",
        jump_url: str | None = None,
    ) -> Remembered:
        """Chunk, embed (in batches) and store `text` as one entry; the index learns it at once."""
        text = text.strip()
        if not text:
            raise UserFacingError("There is nothing to remember: the text is empty.")
        if len(text) > MAX_REMEMBER_CHARS:
            raise UserFacingError(
                f"That is too long to remember at once ({len(text):,} characters; "
                f"the limit is {MAX_REMEMBER_CHARS:,}). Split it into smaller parts."
            )
        chunks = [DocumentChunk(chunk.text) for chunk in chunk_text(text)]
        return await self._store(
            chunks,
            guild_id=guild_id,
            author_id=author_id,
            title=title_of(text) if source == "text" else source,
            source=source,
            jump_url=jump_url,
            model=model,
        )

    async def remember_document(
        self,
        document: ParsedDocument,
        *,
        guild_id: int,
        author_id: int,
        model: str,
        progress: Progress | None = None,
    ) -> Remembered:
        """Store a parsed file as one entry (forgotten as one), its chunks with their pages and headings.

        `progress` hears how many chunks are embedded after each batch (for a message that updates).
        """
        chunks = chunk_document(document)
        if not chunks:
            raise UserFacingError(f"{document.filename} has no text to remember.")
        return await self._store(
            chunks,
            guild_id=guild_id,
            author_id=author_id,
            title=document.filename,
            source=document.filename,
            jump_url=None,
            model=model,
            document=DocumentFile(document.kind, document.size_bytes, document.pages),
            progress=progress,
        )

    async def _store(
        self,
        chunks: Sequence[DocumentChunk],
        *,
        guild_id: int,
        author_id: int,
        title: str,
        source: str,
        jump_url: str | None,
        model: str,
        document: DocumentFile | None = None,
        progress: Progress | None = None,
    ) -> Remembered:
        """Embed (in batches) and store the chunks as one entry; the index learns them at once."""
        client, model, space = self._embedding_model(model)
        try:
            embedded = await self._embed(
                client, [chunk.embedding_input() for chunk in chunks], model, progress
            )
        except EmbeddingFailedError as exc:  # a large file's first batches were paid for: they count
            await self._record_usage(guild_id, author_id, exc.tokens)
            raise
        key: SpaceKey = (guild_id, space, embedded.dims)
        async with self._indexes.lock(key):
            entry, chunk_ids = await self._storage.knowledge.add(
                guild_id=guild_id,
                author_id=author_id,
                title=title,
                source=source,
                jump_url=jump_url,
                model=space,
                dims=embedded.dims,
                chunks=[
                    NewChunk(
                        chunk.text, row.astype("<f4").tobytes(), chunk.page, chunk.headings, chunk.page_label
                    )
                    for chunk, row in zip(chunks, embedded.vectors, strict=True)
                ],
                document=document,
            )
            index = self._indexes.get(key)
            if index is not None:
                index.add(chunk_ids, [entry.id] * len(chunk_ids), embedded.vectors)
                self._indexes.trim()  # it grew
        await self._record_usage(guild_id, author_id, embedded.tokens)
        return Remembered(entry, embedded.tokens)

    async def search(
        self, *, guild_id: int, query: str, count: int, model: str, user_id: int | None = None
    ) -> SearchResults:
        """The `count` chunks closest to `query` among the entries embedded with `model` (on the same
        server)."""
        query = query.strip()
        if not query:
            raise UserFacingError("Give something to search for.")
        client, model, space = self._embedding_model(model)
        count = max(1, min(count, MAX_SEARCH_RESULTS))
        embedded = await self._embed(client, [query[:MAX_QUERY_CHARS]], model)
        if user_id is not None:
            await self._record_usage(guild_id, user_id, embedded.tokens)
        key: SpaceKey = (guild_id, space, embedded.dims)
        index = await self._index(key)
        others = [
            stored
            for stored in await self._storage.knowledge.spaces(guild_id)
            if (stored.model, stored.dims) != (space, embedded.dims)
        ]
        if len(index) == 0 and others:
            stored = ", ".join(f"`{s.model}` ({s.dims} dimensions)" for s in others)
            raise KnowledgeSpaceMismatchError(
                f"This server's knowledge was embedded with {stored}, but searches now use `{space}` "
                f"({embedded.dims} dimensions), and vectors of different models cannot be compared: "
                "set the embedding model back or /remember the entries again."
            )
        snapshot = index.snapshot()
        matches = await asyncio.to_thread(snapshot.search, embedded.vectors[0], count)
        chunks = await self._storage.knowledge.chunks([match.chunk_id for match in matches])
        hits = [
            SearchHit(
                chunk.entry,
                chunk.id,
                chunk.ordinal,
                chunk.text,
                match.score,
                chunk.page,
                chunk.headings,
                chunk.page_label,
            )
            for match in matches
            if (chunk := chunks.get(match.chunk_id)) is not None
        ]
        return SearchResults(hits, space, embedded.dims, embedded.tokens, others)

    async def forget(self, *, guild_id: int, entry_id: int, user_id: int, is_admin: bool) -> KnowledgeEntry:
        """Remove an entry and its chunks; only its author or a server admin may."""
        entry = await self._storage.knowledge.get(guild_id, entry_id)
        if entry is None:
            raise UserFacingError(f"There is no knowledge entry #{entry_id} in this server.")
        if entry.author_id != user_id and not is_admin:
            raise UserFacingError(
                f"Entry #{entry_id} was added by someone else; only they or an admin can remove it."
            )
        key: SpaceKey = (guild_id, entry.model, entry.dims)
        async with self._indexes.lock(key):
            removed = await self._storage.knowledge.delete(guild_id, entry_id)
            index = self._indexes.get(key)
            if index is not None:
                index.remove_entry(entry_id)
        if removed is None:  # someone else removed it meanwhile
            raise UserFacingError(f"There is no knowledge entry #{entry_id} in this server.")
        return removed

    async def link(self, entry_id: int, jump_url: str) -> None:
        """Record where the entry was announced, once that message exists."""
        await self._storage.knowledge.set_jump_url(entry_id, jump_url)

    async def entries(
        self, guild_id: int, *, author_id: int | None = None, matching: str = "", limit: int = 25
    ) -> list[KnowledgeEntry]:
        return await self._storage.knowledge.entries(
            guild_id, author_id=author_id, matching=matching, limit=limit
        )

    async def entry_count(self, guild_id: int) -> int:
        """How many entries the guild has, in every embedding space."""
        return sum(space.entries for space in await self._storage.knowledge.spaces(guild_id))

    async def _index(self, key: SpaceKey) -> VectorIndex:
        index = self._indexes.get(key)
        if index is not None:
            return index
        async with self._indexes.lock(key):
            index = self._indexes.get(key)
            if index is None:
                index = await load_index(self._storage.knowledge, *key)
                self._indexes.put(key, index)
        return index

    async def _embed(
        self, client: AsyncOpenAI, texts: Sequence[str], model: str, progress: Progress | None = None
    ) -> _Embedded:
        """Embed in batches; every vector must come back, all of one dimension. `progress` hears of
        each batch done."""
        rows: list[list[float]] = []
        tokens = 0
        for first in range(0, len(texts), self._batch_size):
            batch = list(texts[first : first + self._batch_size])
            try:
                response = await client.embeddings.create(model=model, input=batch)
            except openai.OpenAIError as exc:
                raise EmbeddingFailedError(_embedding_error(exc, model), tokens) from exc
            if len(response.data) != len(batch):
                raise EmbeddingFailedError(
                    "The embedding model answered for fewer texts than it was sent.", tokens
                )
            rows.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
            tokens += response.usage.prompt_tokens if response.usage else 0
            if progress is not None:
                progress(len(rows), len(texts))
        dims = {len(row) for row in rows}
        if len(dims) != 1 or 0 in dims:
            raise EmbeddingFailedError(
                f"The embedding model `{model}` returned vectors of different sizes ({sorted(dims)}), "
                "which cannot be searched together; nothing was stored.",
                tokens,
            )
        return _Embedded(np.asarray(rows, dtype=np.float32), tokens)

    async def _record_usage(self, guild_id: int, user_id: int, tokens: int) -> None:
        if tokens:
            await self._storage.usage.record(
                guild_id=guild_id, user_id=user_id, input_tokens=tokens, output_tokens=0
            )


async def load_index(
    store: KnowledgeStore, guild_id: int, model: str, dims: int, *, page_entries: int = LOAD_PAGE_ENTRIES
) -> VectorIndex:
    """Build a space's index from SQLite page by page (the database stays free for others meanwhile)."""
    index = VectorIndex(dims)
    index.reserve(await store.vector_count(guild_id, model, dims))
    after = 0
    while True:
        page = await store.vectors(guild_id, model, dims, after_entry_id=after, entries=page_entries)
        if page.last_entry_id == after:
            return index
        await asyncio.to_thread(_append_rows, index, page)
        after = page.last_entry_id


def _append_rows(index: VectorIndex, rows: VectorRows) -> None:
    if any(len(vector) != index.dims * 4 for vector in rows.vectors):
        raise DimensionMismatchError(f"a stored vector is not {index.dims} float32 values")
    matrix = np.frombuffer(b"".join(rows.vectors), dtype="<f4").reshape(len(rows.vectors), index.dims)
    index.add(rows.chunk_ids, rows.entry_ids, matrix)


def _embedding_error(exc: BaseException, model: str) -> str:
    kind, reason = describe_error(exc, model=model)
    if kind == "model_not_found":
        return f"The embedding model `{model}` is not available; an admin can pick another (embedding_model)."
    return reason


class KnowledgeIndexes:
    """Each guild's knowledge vectors per embedding space, loaded on first search, written through on
    remember/forget, within a memory budget: past it the least recently used are dropped (the
    database has every vector; a dropped index loads again when next searched).

    The lock of a space serialises its loading and its changes, so a load never misses or doubles a
    write that lands meanwhile.
    """

    def __init__(self, max_bytes: int = DEFAULT_KNOWLEDGE_MEMORY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._indexes: OrderedDict[SpaceKey, VectorIndex] = OrderedDict()  # least recently used first
        self._locks: dict[SpaceKey, asyncio.Lock] = {}

    def get(self, key: SpaceKey) -> VectorIndex | None:
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
        return index

    def put(self, key: SpaceKey, index: VectorIndex) -> None:
        self._indexes[key] = index
        self._indexes.move_to_end(key)
        self.trim()

    def trim(self) -> list[SpaceKey]:
        """Drop the least recently used indexes while over budget; the latest always stays."""
        total = self.nbytes
        dropped: list[SpaceKey] = []
        while total > self.max_bytes and len(self._indexes) > 1:
            key, index = self._indexes.popitem(last=False)
            total -= index.nbytes
            dropped.append(key)
        if dropped:
            log.info(
                "Knowledge indexes over %d MB: dropped %d (now %d MB in %d)",
                self.max_bytes >> 20,
                len(dropped),
                total >> 20,
                len(self._indexes),
            )
        return dropped

    @property
    def nbytes(self) -> int:
        return sum(index.nbytes for index in self._indexes.values())

    def __contains__(self, key: SpaceKey) -> bool:
        return key in self._indexes

    def lock(self, key: SpaceKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())
