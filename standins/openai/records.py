"""What the fake keeps for assertions: recorded requests, conversations, truncations, container files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tokens import Json, message_text


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
            message_text(item)
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
    source: str = "assistant"
    """`user` for a file the request gave the container (`container.file_ids`), else `assistant`."""

    def as_json(self) -> Json:
        """The API's container file object."""
        return {
            "id": self.id,
            "object": "container.file",
            "bytes": len(self.data),
            "container_id": self.container_id,
            "created_at": self.created_at,
            "path": f"/mnt/data/{self.filename}",
            "source": self.source,
        }


@dataclass
class StoredFile:
    """A file uploaded through the Files API (`POST /v1/files`)."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None = None

    def as_json(self) -> Json:
        """The API's File object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }
