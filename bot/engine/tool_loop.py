"""The loop of a turn, shared by every backend: a model call, its function calls run, their outputs
sent back, and again, until the model answers without calling a tool.

A backend supplies only what differs (`ModelRounds`, one object per turn): how one model call is
streamed, how the calls' outputs become the next call's input, how a completed answer is finished and
kept, and its own recoveries. The loop owns the rest: the model-call gate, the bound on rounds, the
usage sum, the text across rounds (a paragraph break between them), running the tools, and the
endings every backend shares (a cut-off stream, an unfinished answer, too many rounds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import openai

from bot.engine.events import Completed, Failed, FailureKind, RoundSpent, TextDelta, TurnEvent, Usage
from bot.engine.openai_errors import is_context_length_error
from bot.engine.tool_round import RequestedCall, run_tool_round
from bot.engine.turn import TurnRequest
from bot.limits import ModelCallGate
from bot.tooling import ToolRegistry, ToolResult

ROUND_SEPARATOR = "\n\n"
"""Put between the text of two model calls of one turn (unless the first ended its line)."""
TOO_MANY_ROUNDS = "The model kept calling tools without answering, so I stopped it."
ROUND_LIMIT_OUTPUT = "Too many tool rounds in one turn; stopped."
INTERRUPTED_OUTPUT = "The turn was interrupted."


@dataclass(frozen=True, slots=True)
class Unfinished:
    """Why a model call stopped short of an answer: the turn fails with this."""

    kind: FailureKind
    reason: str


CUT_OFF = Unfinished("connection", "The answer was cut off before it finished.")
LENGTH_LIMIT = Unfinished("incomplete", "The answer hit the length limit and was cut short.")
CONTENT_FILTER = Unfinished("content_filter", "The answer was stopped by the content filter.")


@dataclass(frozen=True, slots=True)
class RoundResult:
    """How one model call ended: the last item of a backend's round stream, also after a cut-off one."""

    text: str
    """This call's own text (no separator)."""
    calls: list[RequestedCall]
    usage: Usage
    unfinished: Unfinished | None = None


class ModelRounds(Protocol):
    """One turn's model calls as a backend makes them; `ToolLoop` drives them."""

    def stream_round(self, round_number: int) -> AsyncIterator[TurnEvent | RoundResult]:
        """One model call: its events as they come (text without separators), then its `RoundResult`."""
        ...

    async def recover_from_context_error(self, error: openai.APIError, round_number: int) -> Usage | None:
        """A model call was refused for the context window before anything of it was shown: make the
        next try fit (a shorter history, a fresh conversation) and return what that cost, or None to
        let the error stand."""
        ...

    def add_outputs(self, round_: RoundResult, results: Mapping[str, ToolResult]) -> None:
        """The round's calls and their results (one per call) become the next model call's input."""
        ...

    async def close_calls(
        self, calls: list[RequestedCall], reason: str, results: Mapping[str, ToolResult]
    ) -> None:
        """The turn stops before the calls' outputs are sent: wherever the calls are kept, give each
        an output (its result if it has one, else `reason`)."""
        ...

    async def complete(self, text: str, usage: Usage, last: RoundResult) -> Completed:
        """The answer of a turn whose last model call made no function calls; what the turn keeps
        (history, files) is kept here."""
        ...


@dataclass(frozen=True, slots=True)
class ToolLoop:
    """Drives one turn's model calls and tool calls to its terminal event (`Completed` or `Failed`)."""

    registry: ToolRegistry
    gate: ModelCallGate
    max_tool_rounds: int

    async def answer(self, rounds: ModelRounds, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        """Errors other than the ones a round reports (API errors, a full gate) propagate."""
        usage = Usage()
        text = ""
        for round_number in range(self.max_tool_rounds + 1):
            while True:  # a second pass only after a recovery from a context-length error
                separate = bool(text) and not text.endswith("\n")
                shown = False  # something of this call was shown: it cannot be tried again
                result: RoundResult | None = None
                try:
                    async with self.gate.slot():
                        async for item in rounds.stream_round(round_number):
                            if isinstance(item, RoundResult):
                                result = item
                                continue
                            if isinstance(item, TextDelta):
                                if separate:
                                    separate = False
                                    text += ROUND_SEPARATOR
                                    yield TextDelta(ROUND_SEPARATOR)
                                text += item.text
                            shown = True
                            yield item
                    break
                except openai.APIError as exc:
                    if shown or not is_context_length_error(exc):
                        raise
                    cost = await rounds.recover_from_context_error(exc, round_number)
                    if cost is None:
                        raise
                    usage = usage + cost
                    yield RoundSpent(cost)
            if result is None:
                raise RuntimeError("a model call's stream ended without its result")
            usage = usage + result.usage
            yield RoundSpent(result.usage)
            if result.unfinished is not None:
                yield Failed(result.unfinished.kind, result.unfinished.reason, text, usage)
                return
            if not result.calls:
                yield await rounds.complete(text, usage, result)
                return
            if round_number == self.max_tool_rounds:
                await rounds.close_calls(result.calls, ROUND_LIMIT_OUTPUT, {})
                yield Failed("tool_rounds", TOO_MANY_ROUNDS, text, usage)
                return
            results: dict[str, ToolResult] = {}
            try:
                async for progress in run_tool_round(result.calls, request, self.registry, results):
                    yield progress
            finally:
                if len(results) < len(result.calls):  # cancelled or failed while the tools ran
                    await rounds.close_calls(result.calls, INTERRUPTED_OUTPUT, results)
            rounds.add_outputs(result, results)
