"""Vector stores as the fake keeps them, and the search over them that both `POST
/v1/vector_stores/{id}/search` and a scripted `file_search` call in a response run.

The ranking is plain word overlap between the query and each paragraph of the stores' files (the
bytes uploaded through the Files API, read as UTF-8): enough for a test to know which file a question
finds, in the real result shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .records import StoredFile
from .script import FileSearchCall
from .tokens import Json

_WORD = re.compile(r"\w+", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass
class FakeVectorStoreFile:
    """A file attached to a fake vector store. It is `in_progress` when attached and is processed at
    the first look (`GET`), ending `completed`, or `failed` with `last_error`."""

    file_id: str
    vector_store_id: str
    created_at: int
    usage_bytes: int
    status: str = "in_progress"
    last_error: Json | None = None
    attributes: dict[str, str | float | bool] = field(default_factory=dict)

    def as_json(self) -> Json:
        """The API's VectorStoreFile object."""
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "created_at": self.created_at,
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "last_error": self.last_error,
            "usage_bytes": self.usage_bytes if self.status == "completed" else 0,
            "attributes": self.attributes,
            "chunking_strategy": {
                "type": "static",
                "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
            },
        }


@dataclass
class FakeVectorStore:
    """A vector store: its files by id, and its metadata."""

    id: str
    name: str
    created_at: int
    metadata: dict[str, str]
    files: dict[str, FakeVectorStoreFile] = field(default_factory=dict)

    def as_json(self) -> Json:
        """The API's VectorStore object."""
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        for attached in self.files.values():
            counts[attached.status] = counts.get(attached.status, 0) + 1
        return {
            "id": self.id,
            "object": "vector_store",
            "created_at": self.created_at,
            "name": self.name,
            "metadata": self.metadata,
            "status": "in_progress" if counts["in_progress"] else "completed",
            "usage_bytes": sum(f.usage_bytes for f in self.files.values() if f.status == "completed"),
            "file_counts": {**counts, "total": len(self.files)},
            "last_active_at": self.created_at,
            "expires_after": None,
            "expires_at": None,
        }


@dataclass(frozen=True)
class SearchHit:
    file_id: str
    filename: str
    score: float
    text: str

    def as_result(self) -> Json:
        """A `file_search_call` result."""
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "score": self.score,
            "text": self.text,
            "attributes": {},
        }

    def as_search_response(self) -> Json:
        """A `POST /v1/vector_stores/{id}/search` result."""
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "score": self.score,
            "attributes": {},
            "content": [{"type": "text", "text": self.text}],
        }


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)}


def search(
    stores: Iterable[FakeVectorStore],
    files: Mapping[str, StoredFile],
    queries: Iterable[str],
    *,
    max_results: int = 10,
) -> list[SearchHit]:
    """The paragraphs of the stores' completed files that share words with the queries, best first
    (score: the share of the query's words the paragraph holds)."""
    wanted = set().union(*(_words(query) for query in queries))
    if not wanted:
        return []
    hits: list[SearchHit] = []
    for store in stores:
        for attached in store.files.values():
            stored = files.get(attached.file_id)
            if attached.status != "completed" or stored is None:
                continue
            text = stored.data.decode("utf-8", errors="replace")
            for paragraph in _PARAGRAPH_BREAK.split(text):
                paragraph = paragraph.strip()
                shared = len(wanted & _words(paragraph))
                if paragraph and shared:
                    hits.append(
                        SearchHit(stored.id, stored.filename, round(shared / len(wanted), 4), paragraph)
                    )
    hits.sort(key=lambda hit: -hit.score)
    return hits[:max_results]


def file_search_item(item_id: str, call: FileSearchCall, hits: list[SearchHit], include: set[str]) -> Json:
    """The `file_search_call` output item (its results only when the request included them)."""
    return {
        "id": item_id,
        "type": "file_search_call",
        "status": call.status,
        "queries": list(call.queries),
        "results": [hit.as_result() for hit in hits] if "file_search_call.results" in include else None,
    }


def cited_files(hits: list[SearchHit], count: int) -> list[SearchHit]:
    """The best hit of each of the `count` best files."""
    cited: list[SearchHit] = []
    for hit in hits:
        if len(cited) >= count:
            break
        if hit.file_id not in {c.file_id for c in cited}:
            cited.append(hit)
    return cited
