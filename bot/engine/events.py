"""What a turn produces, as a stream of small immutable events.

The engine yields these and knows nothing of how they are shown; the Discord renderer (or a test, or a
console) turns them into messages. Every turn ends with exactly one terminal event: ``Completed``,
``Failed``, ``Busy`` or ``Cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one turn consumed (all model calls of the turn added up)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True, slots=True)
class Queued:
    """The conversation is busy; this turn waits behind ``ahead`` others."""

    ahead: int


@dataclass(frozen=True, slots=True)
class Started:
    """The turn holds the conversation and is about to call the model."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    """The model asked for a tool; ``label`` is a short human line ("Searching restaurants...")."""

    call_id: str
    name: str
    label: str
    arguments: str = ""
    """The call's arguments as the model sent them (function calls; a hosted call's come at its end)."""
    function_call: bool = False
    """A call of the bot's own function tools (run by the tool loop), not a hosted tool's."""


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """A tool ran (or was refused, declined or failed); ``summary`` is a short human line."""

    call_id: str
    name: str
    ok: bool
    summary: str
    arguments: str = ""
    """What the call was asked, when known only at its end (a hosted call's query); else empty."""
    detail: str = ""
    """Its result or error for the turn's steps (function calls: what the model reads back)."""
    error_code: str | None = None
    """Why a function call did not succeed (`ToolResult.error_code`: e.g. "declined")."""
    duration_s: float | None = None
    """How long the call ran, where measured (a function call); None: from its events' times."""
    function_call: bool = False
    """A call of the bot's own function tools (run by the tool loop), not a hosted tool's."""


@dataclass(frozen=True, slots=True)
class Citation:
    """A source the answer cites: a web page (``url_citation``) or a file of the guild's vector store
    (``file_citation``: a file id and no url)."""

    title: str
    url: str | None = None
    file_id: str | None = None


@dataclass(frozen=True, slots=True)
class CodeRun:
    """Code the hosted code interpreter ran, with its logs."""

    call_id: str
    code: str
    logs: str


FileProblem = Literal["too_large", "too_many", "unavailable"]


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """A file the model made (e.g. a code interpreter plot), already downloaded.

    A file that could not be fetched is still named, so the reply can say so: ``problem`` says why
    (too large to download, too many files, the download failed) and ``data`` is then empty.
    """

    filename: str
    data: bytes
    problem: FileProblem | None = None
    size_bytes: int | None = None
    """The file's real size when it is known but was not downloaded (``too_large``)."""


@dataclass(frozen=True, slots=True)
class Flagged:
    """Moderation flagged the user's message; the turn goes on, and moderators may want to know."""

    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Completed:
    """The turn finished; ``text`` is the whole answer (the deltas joined).

    ``notes`` are one-line remarks for the reader about how the answer came about (e.g. earlier
    messages left out to fit the model's context window), shown small after the answer.
    """

    text: str
    usage: Usage
    citations: tuple[Citation, ...] = ()
    files: tuple[GeneratedFile, ...] = ()
    code_runs: tuple[CodeRun, ...] = ()
    refusal: bool = False
    notes: tuple[str, ...] = ()
    turn_id: int | None = None
    """The turn's journal id (set by the engine), which its recorded steps are kept under."""
    steps: int = 0
    """How many tool steps the turn recorded (`bot.storage.turn_steps`): a reply with any shows them."""


FailureKind = Literal[
    "rate_limited",
    "quota",
    "auth",
    "model_not_found",
    "bad_request",
    "timeout",
    "connection",
    "server",
    "incomplete",
    "content_filter",
    "failed",
    "tool_rounds",
    "budget",
    "cooldown",
    "moderation",
    "internal",
]


@dataclass(frozen=True, slots=True)
class Failed:
    """The turn could not be answered; ``reason`` is one short sentence for the user.

    ``partial_text`` is what had streamed before the failure: shown, never stored as a complete answer.
    """

    kind: FailureKind
    reason: str
    partial_text: str = ""
    usage: Usage = field(default_factory=Usage)
    turn_id: int | None = None
    """As on `Completed`: a turn that ran tools before it failed shows what they did too."""
    steps: int = 0


@dataclass(frozen=True, slots=True)
class Busy:
    """The conversation's queue is full; the turn was not accepted (nothing was sent to the model)."""

    reason: str


CancelReason = Literal["stopped", "shutdown"]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The turn was stopped before it finished: by ``/stop``, or because the bot is shutting down.

    A turn cut short by a shutdown is journalled as interrupted, and its reply says to ask again.
    """

    partial_text: str = ""
    reason: CancelReason = "stopped"
    turn_id: int | None = None
    """As on `Completed`: a turn stopped after its tools ran shows what they did too."""
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    """The tokens of the model calls that ended before the stop: they were paid for."""


@dataclass(frozen=True, slots=True)
class RoundSpent:
    """One model call ended and cost this (`usage`): the engine adds it up, so a turn that breaks or
    is stopped after some calls still counts them. Never shown; a finished turn reports its total."""

    usage: Usage


TurnEvent = (
    Queued
    | Started
    | RoundSpent
    | TextDelta
    | ToolStarted
    | ToolFinished
    | CodeRun
    | Flagged
    | Completed
    | Failed
    | Busy
    | Cancelled
)
TerminalEvent = Completed | Failed | Busy | Cancelled
TERMINAL_EVENTS = (Completed, Failed, Busy, Cancelled)
