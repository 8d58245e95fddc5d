"""Everything this process keeps in memory, in one container built at start-up and passed down.

Each part's class lives with its owner (the engine's lanes, the limits, the settings cache, the
knowledge indexes, the open confirmation questions); this is only where one process holds them all.
Several shard processes would each own a disjoint set of guilds (and DMs live on shard 0), so
per-conversation locks stay correct per process; the caches here are write-through copies of what
the database holds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from bot.conversation_files import ToolFiles
from bot.engine.lanes import ConversationLanes, IntakeLocks
from bot.guild_settings import SettingsCache
from bot.knowledge import DEFAULT_KNOWLEDGE_MEMORY_BYTES, KnowledgeIndexes
from bot.limits import Cooldowns, ModelCallGate, PendingTurns
from bot.tooling import OpenQuestions


@dataclass
class ProcessState:
    """The one home of per-process state; built once at start-up and passed down."""

    model_gate: ModelCallGate
    lanes: ConversationLanes = field(default_factory=ConversationLanes)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    pending: PendingTurns = field(default_factory=PendingTurns)
    settings: SettingsCache = field(default_factory=SettingsCache)
    intake: IntakeLocks = field(default_factory=IntakeLocks)
    knowledge: KnowledgeIndexes = field(default_factory=KnowledgeIndexes)
    questions: OpenQuestions = field(default_factory=OpenQuestions)
    tool_files: ToolFiles = field(default_factory=ToolFiles)
    """Files function tools made for replies still being written (drawings on the chat backend)."""
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """This process run's id, on each turn it journals: turns of other runs left running are lost."""

    @classmethod
    def create(
        cls,
        *,
        max_concurrent_model_calls: int,
        max_waiting_model_calls: int,
        knowledge_memory_bytes: int = DEFAULT_KNOWLEDGE_MEMORY_BYTES,
    ) -> ProcessState:
        return cls(
            model_gate=ModelCallGate(max_concurrent_model_calls, max_waiting_model_calls),
            knowledge=KnowledgeIndexes(knowledge_memory_bytes),
        )
