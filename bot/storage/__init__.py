"""All of the bot's SQL lives in this package; the rest of the code calls these stores.

`Storage` works the same on SQLite and on PostgreSQL (for several shard processes): see `database.py`.
Nothing outside this package builds a query.
"""

from __future__ import annotations

from pathlib import Path

from bot.storage.assistants import AssistantStore
from bot.storage.bookings import BookingStore
from bot.storage.claims import MessageClaims
from bot.storage.conversation_files import ConversationFile, ConversationFileStore
from bot.storage.conversations import ConversationRecord, ConversationStore
from bot.storage.database import ConversationLocks, Database, HeldConversation
from bot.storage.geocode_cache import CachedLookup, CachedPlace, GeocodeCache
from bot.storage.history import HistoryMessage, HistoryStore
from bot.storage.knowledge import KnowledgeEntry, KnowledgeStore, StoredChunk
from bot.storage.rides import RideStore
from bot.storage.runs import RunRegistry, ShardSet
from bot.storage.settings import GuildSettingsStore, SettingChange
from bot.storage.tool_calls import CallClaim, ToolCallLedger
from bot.storage.turn_steps import RecordedSteps, TurnStep, TurnStepStore
from bot.storage.turns import InterruptedTurn, TurnJournal
from bot.storage.usage import UsageStore, UsageTotals, utc_day
from bot.storage.vector_stores import VectorStoreFileEntry, VectorStoreRegistry

__all__ = [
    "AssistantStore",
    "CachedLookup",
    "CachedPlace",
    "CallClaim",
    "ConversationFile",
    "ConversationFileStore",
    "ConversationLocks",
    "ConversationRecord",
    "Database",
    "GeocodeCache",
    "GuildSettingsStore",
    "HeldConversation",
    "HistoryMessage",
    "InterruptedTurn",
    "KnowledgeEntry",
    "MessageClaims",
    "RecordedSteps",
    "RunRegistry",
    "SettingChange",
    "ShardSet",
    "Storage",
    "StoredChunk",
    "TurnStep",
    "TurnStepStore",
    "UsageTotals",
    "VectorStoreFileEntry",
    "utc_day",
]


class Storage:
    """The database and every store on it, opened and migrated together."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conversations = ConversationStore(db)
        self.conversation_files = ConversationFileStore(db)
        self.history = HistoryStore(db)
        self.usage = UsageStore(db)
        self.settings = GuildSettingsStore(db)
        self.turns = TurnJournal(db)
        self.tool_calls = ToolCallLedger(db)
        self.knowledge = KnowledgeStore(db)
        self.bookings = BookingStore(db)
        self.rides = RideStore(db)
        self.turn_steps = TurnStepStore(db)
        self.assistants = AssistantStore(db)
        self.geocode_cache = GeocodeCache(db)
        self.runs = RunRegistry(db)
        self.message_claims = MessageClaims(db)
        self.vector_stores = VectorStoreRegistry(db)
        self.conversation_locks = db.conversation_locks

    @classmethod
    async def open(cls, path: str | Path) -> Storage:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()
