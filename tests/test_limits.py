"""Limits for commands that call the model directly: cooldown, budgets and the global gate."""

from __future__ import annotations

import pytest

from bot.config import GuildSettings
from bot.limits import LimitReachedError, model_call_allowance
from bot.process_state import ProcessState
from bot.storage import Storage


async def test_a_full_model_gate_refuses_with_a_sentence(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=1, max_waiting_model_calls=0)
    settings = GuildSettings()
    async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=1):
        with pytest.raises(LimitReachedError, match="very busy"):
            async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=2):
                pytest.fail("a second call got a slot over the cap")
    async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=3):
        pass  # the slot is free again


async def test_cooldown_and_budget_apply_before_the_gate(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=5, max_waiting_model_calls=5)
    settings = GuildSettings(user_cooldown_s=60, daily_token_budget_user=100)
    async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=1):
        pass
    with pytest.raises(LimitReachedError, match="Slow down"):
        async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=1):
            pass
    await storage.usage.record(guild_id=1, user_id=2, input_tokens=90, output_tokens=20)
    with pytest.raises(LimitReachedError, match="daily token budget"):
        async with model_call_allowance(storage.usage, state, settings, guild_id=1, user_id=2):
            pass
