"""Limits for commands that call the model directly: cooldown, budgets and the global gate."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.config import GuildSettings
from bot.limits import LimitReachedError, MeteredCalls
from bot.process_state import ProcessState
from bot.storage import Storage
from bot.storage.usage import utc_day
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines


async def test_a_full_model_gate_refuses_with_a_sentence(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=1, max_waiting_model_calls=0)
    metered = MeteredCalls(storage.usage, state.cooldowns, state.model_gate)
    settings = GuildSettings()
    async with metered.allowance(settings, guild_id=1, user_id=1):
        with pytest.raises(LimitReachedError, match="very busy"):
            async with metered.allowance(settings, guild_id=1, user_id=2):
                pytest.fail("a second call got a slot over the cap")
    async with metered.allowance(settings, guild_id=1, user_id=3):
        pass  # the slot is free again


async def test_cooldown_and_budget_apply_before_the_gate(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=5, max_waiting_model_calls=5)
    metered = MeteredCalls(storage.usage, state.cooldowns, state.model_gate)
    settings = GuildSettings(user_cooldown_s=60, daily_token_budget_user=100)
    async with metered.allowance(settings, guild_id=1, user_id=1):
        pass
    with pytest.raises(LimitReachedError, match="Slow down"):
        async with metered.allowance(settings, guild_id=1, user_id=1):
            pass
    await storage.usage.record(guild_id=1, user_id=2, input_tokens=90, output_tokens=20)
    with pytest.raises(LimitReachedError, match="daily token budget"):
        async with metered.allowance(settings, guild_id=1, user_id=2):
            pass


@dataclass(frozen=True)
class _Cost:
    input_tokens: int
    output_tokens: int


async def test_a_metered_call_records_what_it_cost_and_counts_toward_the_budget(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=5, max_waiting_model_calls=5)
    metered = MeteredCalls(storage.usage, state.cooldowns, state.model_gate)
    settings = GuildSettings(daily_token_budget_user=100)

    async def expensive() -> _Cost:
        return _Cost(input_tokens=70, output_tokens=40)

    assert await metered.call(settings, expensive, guild_id=1, user_id=7) == _Cost(70, 40)
    used = await storage.usage.user_total(1, 7, since_day=utc_day())
    assert (used.input_tokens, used.output_tokens) == (70, 40)
    with pytest.raises(LimitReachedError, match="daily token budget"):
        await metered.call(settings, expensive, guild_id=1, user_id=7)


async def test_a_metered_call_that_fails_records_nothing_and_frees_its_slot(storage: Storage) -> None:
    state = ProcessState.create(max_concurrent_model_calls=1, max_waiting_model_calls=0)
    metered = MeteredCalls(storage.usage, state.cooldowns, state.model_gate)

    async def broken() -> _Cost:
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        await metered.call(GuildSettings(), broken, guild_id=1, user_id=7)
    assert (await storage.usage.user_total(1, 7, since_day=utc_day())).total_tokens == 0
    async with metered.allowance(GuildSettings(), guild_id=1, user_id=8):
        pass  # the only slot was given back
