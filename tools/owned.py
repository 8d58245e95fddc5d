"""A record the caller owns (a table reservation, a ride): listed, looked up and cancelled by them only.

Both tool families keep such records under the same rules: ids as the model writes them ("#12"),
`not_found` and `not_yours`, a cancellation once and not after the record is over, and the same two
tools (`list_<records>`, `cancel_<record>`). They are written once here. A family fills in only
what differs: its nouns (`RecordKind`), its record type (an `OwnedRecord`), and where its provider
keeps the records: rows in SQLite (`OwnedRows`, the built-in provider) or an HTTP resource
(`OwnedResource`), whose contract is:

    GET    /<records>?user_id&guild_id&since -> {"<records>": [R...]}
    GET    /<records>/{id}?user_id            -> {"<record>": R}
    DELETE /<records>/{id}?user_id            -> {"<record>": R}   (header Idempotency-Key: <call id>)

where R may carry `user_id`: a record the service says is someone else's is never shown or touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict

from bot.storage.owned import CancelResult, OwnedRow
from bot.tooling import ConfirmationRequest, Tool, ToolContext, ToolError, ToolResult
from tools.common import Clock, confirmation, parse_id
from tools.providers import JsonApi, ProviderDirectory, field

Fields = tuple[tuple[str, str], ...]


class OwnedRecord(Protocol):
    """What the shared tools need of a family's record."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    def is_over(self, now: dt.datetime) -> bool:
        """Whether it is past the point where it can be cancelled."""
        ...

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]: ...

    def cancel_question(self, tz: ZoneInfo) -> tuple[str, Fields]:
        """The title and the facts the user confirms before it is cancelled."""
        ...

    def cancelled_summary(self) -> str: ...


R = TypeVar("R", bound=OwnedRecord)
R_co = TypeVar("R_co", bound=OwnedRecord, covariant=True)


@dataclass(frozen=True, slots=True)
class RecordKind:
    """How a family's records are named: in tool names, JSON keys, HTTP paths and sentences."""

    noun: str
    """"reservation": `cancel_reservation`, `{"reservation": ...}`, "Reservation 12 ..."."""
    plural: str
    """"reservations": `list_reservations`, `{"reservations": [...]}`, `/reservations`."""
    over: str
    """Why a record can no longer be cancelled, as in "Ride 3 is over"."""
    listed: str
    """The list's summary, with `{count}`: "{count} upcoming reservations"."""

    @property
    def list_tool(self) -> str:
        return f"list_{self.plural}"

    @property
    def cancel_tool(self) -> str:
        return f"cancel_{self.noun}"

    def number(self, record_id: str) -> int:
        """A stored row's id, or `not_found` when no row can have it."""
        number = parse_id(record_id)
        if number is None:
            raise self.not_found(record_id)
        return number

    def not_found(self, record_id: str) -> ToolError:
        return ToolError(
            "not_found", f"There is no {self.noun} {record_id}; {self.list_tool} shows the user's own."
        )

    def not_yours(self, record_id: str) -> ToolError:
        return ToolError(
            "not_yours", f"{self._named(record_id)} belongs to someone else; only they can change it."
        )

    def already_cancelled(self, record_id: str, *, verb: Literal["is", "was"]) -> ToolError:
        return ToolError("already_cancelled", f"{self._named(record_id)} {verb} already cancelled.")

    def too_late(self, record_id: str) -> ToolError:
        return ToolError("too_late", f"{self._named(record_id)} {self.over}; it cannot be cancelled.")

    def _named(self, record_id: str) -> str:
        return f"{self.noun.capitalize()} {record_id}"


def record_id(kind: RecordKind, example: str, *, max_chars: int) -> AfterValidator:
    """The id argument's check: "#12" means "12"; an empty or overlong one is refused."""

    def clean(value: str) -> str:
        cleaned = value.strip().lstrip("#")
        if not cleaned or len(cleaned) > max_chars:
            raise ValueError(f"must be a {kind.noun} id like '{example}'")
        return cleaned

    return AfterValidator(clean)


class RecordArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def record_id(self) -> str:
        """The id the model named (each family names the field: `reservation_id`, `ride_id`)."""
        raise NotImplementedError


class OwnedRecords(Protocol[R_co]):
    """Where a provider keeps the caller's records; each method raises `ToolError` for the user."""

    async def of_caller(self, caller: ToolContext, *, since: dt.datetime) -> Sequence[R_co]:
        """The caller's open records in this guild (or in DMs), from `since` on."""
        ...

    async def get(self, record_id: str, caller: ToolContext) -> R_co:
        """The caller's own record (`not_found` / `not_yours` otherwise)."""
        ...

    async def cancel(self, record_id: str, caller: ToolContext) -> R_co: ...


class KeepsRecords(Protocol[R_co]):
    """A provider that keeps the caller's records (an `OwnedRows` or an `OwnedResource`)."""

    @property
    def records(self) -> OwnedRecords[R_co]: ...


# ------------------------------------------------------------------------------ built-in provider


Row = TypeVar("Row", bound=OwnedRow)


class RowsOfUser(Protocol[Row]):
    def __call__(self, user_id: int, guild_id: int | None, /, *, since: int) -> Awaitable[list[Row]]: ...


class CancelRow(Protocol[Row]):
    def __call__(self, record_id: int, /, *, user_id: int) -> Awaitable[CancelResult[Row]]: ...


class OwnedRows(Generic[Row, R]):
    """The built-in provider's records: rows of a store in `bot.storage`, read as the family's type."""

    def __init__(
        self,
        kind: RecordKind,
        *,
        row: Callable[[int], Awaitable[Row | None]],
        rows_of: RowsOfUser[Row],
        cancel_row: CancelRow[Row],
        record: Callable[[Row], R],
    ) -> None:
        self._kind = kind
        self._row = row
        self._rows_of = rows_of
        self._cancel_row = cancel_row
        self._record = record

    async def of_caller(self, caller: ToolContext, *, since: dt.datetime) -> list[R]:
        rows = await self._rows_of(caller.user_id, caller.guild_id, since=int(since.timestamp()))
        return [self._record(row) for row in rows]

    async def get(self, record_id: str, caller: ToolContext) -> R:
        row = await self._row(self._kind.number(record_id))
        if row is None:
            raise self._kind.not_found(record_id)
        if row.user_id != caller.user_id:
            raise self._kind.not_yours(record_id)
        return self._record(row)

    async def cancel(self, record_id: str, caller: ToolContext) -> R:
        result = await self._cancel_row(self._kind.number(record_id), user_id=caller.user_id)
        if result.outcome == "not_found":
            raise self._kind.not_found(record_id)
        if result.outcome == "not_yours":
            raise self._kind.not_yours(record_id)
        if result.outcome == "already_cancelled":
            raise self._kind.already_cancelled(record_id, verb="was")
        assert result.record is not None
        return self._record(result.record)


# ---------------------------------------------------------------------------------- HTTP provider


class OwnedResource(Generic[R]):
    """An HTTP provider's records of the caller (the contract in this module's docstring)."""

    def __init__(
        self, api: JsonApi, kind: RecordKind, parse: Callable[[Mapping[str, Any], ZoneInfo], R]
    ) -> None:
        self._api = api
        self._kind = kind
        self._parse = parse
        self._path = f"/{kind.plural}"

    async def of_caller(self, caller: ToolContext, *, since: dt.datetime) -> list[R]:
        params = {"user_id": str(caller.user_id), "since": since.isoformat()}
        if caller.guild_id is not None:
            params["guild_id"] = str(caller.guild_id)
        payload = await self._api.call("GET", self._path, params=params)
        items = field(payload, self._kind.plural, self._api.what)
        if not isinstance(items, list):
            raise ToolError("unavailable", f"The {self._api.what} sent an unreadable list.")
        return [self.read(item, caller) for item in items]

    async def get(self, record_id: str, caller: ToolContext) -> R:
        return await self._one("GET", record_id, caller)

    async def cancel(self, record_id: str, caller: ToolContext) -> R:
        return await self._one("DELETE", record_id, caller)

    def from_answer(self, payload: Mapping[str, Any], caller: ToolContext, record_id: str | None = None) -> R:
        """The record in an answer like `{"<record>": R}` (also what a booking or an order returns)."""
        return self.read(field(payload, self._kind.noun, self._api.what), caller, record_id)

    def read(self, item: Any, caller: ToolContext, record_id: str | None = None) -> R:
        """One record as the service sent it; never another user's."""
        unreadable = ToolError("unavailable", f"The {self._api.what} sent an unreadable {self._kind.noun}.")
        if not isinstance(item, dict):
            raise unreadable
        owner = item.get("user_id")
        if owner is not None and str(owner) != str(caller.user_id):
            raise self._kind.not_yours(record_id or str(item.get("id")))
        try:
            return self._parse(item, caller.tz)
        except (TypeError, ValueError):
            raise unreadable from None

    async def _one(self, method: Literal["GET", "DELETE"], record_id: str, caller: ToolContext) -> R:
        payload = await self._api.call(
            method,
            f"{self._path}/{quote(record_id, safe='')}",
            params={"user_id": str(caller.user_id)},
            idempotency_key=caller.call_id if method == "DELETE" else None,
        )
        return self.from_answer(payload, caller, record_id)


# ------------------------------------------------------------------------------------------ tools


class OwnedRecordTools(Generic[R]):
    """`list_<records>` and `cancel_<record>`: the caller's own records, wherever the guild keeps them."""

    def __init__(
        self,
        kind: RecordKind,
        family: str,
        providers: ProviderDirectory[KeepsRecords[R]],
        clock: Clock,
        *,
        list_lookback: dt.timedelta = dt.timedelta(0),
    ) -> None:
        self._kind = kind
        self._family = family
        self._providers = providers
        self._clock = clock
        self._list_lookback = list_lookback

    def tools(
        self, *, list_description: str, list_arguments: type[BaseModel], cancel_arguments: type[RecordArgs]
    ) -> tuple[Tool[Any], Tool[Any]]:
        """`list_<records>` (the family says which of them it lists) and `cancel_<record>`."""
        kind = self._kind
        listing = Tool(
            name=kind.list_tool,
            family=self._family,
            description=list_description,
            arguments=list_arguments,
            handler=self.list_records,
            activity=f"Checking {kind.plural}",
        )
        cancelling = Tool(
            name=kind.cancel_tool,
            family=self._family,
            description=(
                f"Cancel one of the user's own {kind.plural} by id (see {kind.list_tool}). The user "
                f"confirms first. Other people's {kind.plural} cannot be cancelled."
            ),
            arguments=cancel_arguments,
            handler=self.cancel,
            activity=f"Cancelling a {kind.noun}",
            side_effect=True,
            preview=self.preview_cancel,
        )
        return listing, cancelling

    async def list_records(self, args: BaseModel, context: ToolContext) -> ToolResult:
        since = self._clock() - self._list_lookback
        found = await self._records(context).of_caller(context, since=since)
        return ToolResult.success(
            {self._kind.plural: [record.to_json(context.tz) for record in found]},
            self._kind.listed.format(count=len(found)),
        )

    async def preview_cancel(self, args: RecordArgs, context: ToolContext) -> ConfirmationRequest:
        record = await self._cancellable(args.record_id, context)
        title, fields = record.cancel_question(context.tz)
        return confirmation(context, self._kind.cancel_tool, title, fields)

    async def cancel(self, args: RecordArgs, context: ToolContext) -> ToolResult:
        await self._cancellable(args.record_id, context)
        record = await self._records(context).cancel(args.record_id, context)
        return ToolResult.success(
            {"cancelled": True, self._kind.noun: record.to_json(context.tz)}, record.cancelled_summary()
        )

    async def _cancellable(self, record_id: str, context: ToolContext) -> R:
        record = await self._records(context).get(record_id, context)
        if record.status == "cancelled":
            raise self._kind.already_cancelled(record_id, verb="is")
        if record.is_over(self._clock()):
            raise self._kind.too_late(record_id)
        return record

    def _records(self, context: ToolContext) -> OwnedRecords[R]:
        return self._providers.for_call(context).records
