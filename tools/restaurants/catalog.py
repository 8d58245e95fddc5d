"""Each server's restaurant catalog, run by its admins: add, edit, remove, import a CSV, audit.

Discord-free: the `/restaurants` cog only turns options into these calls and answers into messages.
Every entry goes through `RestaurantEntry` (the one schema); every problem is a `CatalogError` whose
text is one sentence for the admin. Changes are decided and written in one transaction under the
server's lock (`BookingStore.change_catalog`), so an import lands whole or not at all.

A server sees the shared demo catalog until it has restaurants of its own; the first add or import
starts its own catalog (the demo, fictional places, then disappears there instead of mixing with real
ones; reservations already made at demo places keep working). The demo is never changed from a
server: one server's edit would change every other's. Removing a restaurant with upcoming bookings is
refused with their count: members keep the tables they were promised, and an admin who must stop
new bookings at once sets `tables_per_slot` to 0. A removed restaurant is kept (inactive) for its
past reservations.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from bot.errors import UserFacingError
from bot.storage.bookings import (
    BookingStore,
    CatalogSnapshot,
    RestaurantChange,
    RestaurantRecord,
    RestaurantWrite,
)
from tools.common import Clock, utc_now
from tools.restaurants.model import RestaurantEntry, entry_problem

MAX_IMPORT_BYTES = 64 * 1024
MAX_IMPORT_ROWS = 500
MAX_ECHO_CHARS = 40
CSV_COLUMNS: tuple[str, ...] = ("name", "cuisine", "area", "opening_hours", "tables_per_slot", "timezone")
REQUIRED_COLUMNS: frozenset[str] = frozenset(CSV_COLUMNS) - {"timezone"}
COLUMN_ALIASES: Mapping[str, str] = {"time_zone": "timezone", "tz": "timezone", "hours": "opening_hours"}
CSV_EXAMPLE = (
    "name,cuisine,area,opening_hours,tables_per_slot,timezone\n"
    'Trattoria Roma,italian,Old Town,"tue-sun 12:00-14:30,18:00-23:00",6,\n'
    "Sakura Sushi,japanese,City Centre,mon-sat 17:30-22:30,5,Europe/Paris\n"
)
"""A file `/restaurants import` accepts (the time zone column may be left out or empty)."""


class CatalogError(UserFacingError):
    """A catalog change that cannot be made; the message is one sentence for the admin."""


@dataclass(frozen=True, slots=True)
class CatalogView:
    restaurants: list[RestaurantRecord]
    demo: bool  # True: the shared demo catalog, until the server adds its own


@dataclass(frozen=True, slots=True)
class ImportSummary:
    added: list[str]
    updated: list[str]
    unchanged: int

    def sentence(self) -> str:
        return f"added {len(self.added)}, updated {len(self.updated)}, unchanged {self.unchanged}"


def _echo(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= MAX_ECHO_CHARS else flat[: MAX_ECHO_CHARS - 1] + "…")


def _column(header: str) -> str:
    return COLUMN_ALIASES.get(key := "_".join(header.strip().lower().replace("-", " ").split()), key)


def parse_catalog_csv(data: bytes) -> list[RestaurantEntry]:
    """The restaurants of a CSV file with a header; any problem is a `CatalogError` naming the row
    (counted as a spreadsheet shows them: the header is row 1) and the field."""
    if len(data) > MAX_IMPORT_BYTES:
        raise CatalogError(f"The file is too big: at most {MAX_IMPORT_BYTES // 1024} KB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CatalogError("The file is not UTF-8 text; save it as CSV (UTF-8).") from None
    if "\0" in text:
        raise CatalogError("The file is not a CSV text file (it holds binary data).")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise CatalogError(f"The file is not readable CSV ({exc}).") from None
    header_at = next((index for index, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if header_at is None:
        raise CatalogError(f"The file is empty; its first line names the columns: {', '.join(CSV_COLUMNS)}.")
    columns = [_column(cell) for cell in rows[header_at]]
    for column in columns:
        if column not in CSV_COLUMNS:
            raise CatalogError(
                f"Row {header_at + 1} (the header) has an unknown column {_echo(column)}; "
                f"the columns are {', '.join(CSV_COLUMNS)}."
            )
    if len(set(columns)) != len(columns):
        raise CatalogError(f"Row {header_at + 1} (the header) names a column twice.")
    missing = [column for column in CSV_COLUMNS if column in REQUIRED_COLUMNS and column not in columns]
    if missing:
        raise CatalogError(
            f"Row {header_at + 1} (the header) lacks {', '.join(missing)}; "
            f"the columns are {', '.join(CSV_COLUMNS)} (timezone may be left out)."
        )
    entries: list[RestaurantEntry] = []
    first_row_of: dict[str, int] = {}
    for index in range(header_at + 1, len(rows)):
        row, number = rows[index], index + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            raise CatalogError(
                f"Row {number} has {len(row)} values but the header names {len(columns)} columns "
                "(put a value with a comma inside double quotes)."
            )
        if len(entries) == MAX_IMPORT_ROWS:
            raise CatalogError(f"The file has more than {MAX_IMPORT_ROWS} restaurants; split it.")
        try:
            entry = RestaurantEntry.model_validate(
                {column: cell.strip() for column, cell in zip(columns, row, strict=True)}
            )
        except ValidationError as exc:
            raise CatalogError(f"row {number}, {entry_problem(exc)}.") from None
        key = entry.name.lower()
        if key in first_row_of:
            raise CatalogError(f"row {number}, name: {_echo(entry.name)} is also on row {first_row_of[key]}.")
        first_row_of[key] = number
        entries.append(entry)
    if not entries:
        raise CatalogError("The file has a header but no restaurants under it.")
    return entries


def catalog_csv(entries: Sequence[RestaurantEntry]) -> str:
    """The entries as a CSV file that `parse_catalog_csv` reads back (an export, and the tests' oracle)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.name,
                entry.cuisine,
                entry.area,
                entry.opening_hours,
                entry.tables_per_slot,
                entry.timezone or "",
            ]
        )
    return out.getvalue()


def validate_entry(values: Mapping[str, object]) -> RestaurantEntry:
    """An entry from an admin's options, or a `CatalogError` naming the field."""
    try:
        return RestaurantEntry.model_validate(dict(values))
    except ValidationError as exc:
        raise CatalogError(f"{entry_problem(exc)}.") from None


def _find(snapshot: CatalogSnapshot, name: str) -> RestaurantRecord:
    wanted = " ".join(name.split()).lower()
    for record in snapshot.restaurants:
        if record.name.lower() == wanted:
            return record
    if not snapshot.has_own:
        raise CatalogError(
            "This server still shows the shared demo catalog, which cannot be changed here; "
            "add or import your own restaurants with /restaurants add or /restaurants import."
        )
    raise CatalogError(f"This server has no restaurant called {_echo(name)}; see /restaurants list.")


def _name_taken(snapshot: CatalogSnapshot, name: str, *, other_than: int | None = None) -> None:
    for record in snapshot.restaurants:
        if record.name.lower() == name.lower() and record.id != other_than:
            raise CatalogError(f"name: {_echo(record.name)} is already in this server's catalog.")


class RestaurantCatalog:
    """The admin side of the built-in booking provider's catalog (the tools read the same rows)."""

    def __init__(self, store: BookingStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def view(self, guild_id: int | None) -> CatalogView:
        """What members of this server can book (the demo catalog until it has its own)."""
        records = await self._store.restaurants(guild_id)
        own = guild_id is not None and await self._store.has_own_catalog(guild_id)
        return CatalogView(records, demo=not own)

    async def own_names(self, guild_id: int) -> list[str]:
        """The names an admin can edit or remove (none while the demo catalog shows)."""
        return [
            record.name for record in await self._store.restaurants(guild_id) if record.guild_id == guild_id
        ]

    async def add(self, guild_id: int, user_id: int, entry: RestaurantEntry) -> RestaurantChange:
        def decide(snapshot: CatalogSnapshot) -> list[RestaurantWrite]:
            _name_taken(snapshot, entry.name)
            return [RestaurantWrite(None, entry.fields())]

        [change] = await self._change(guild_id, user_id, decide)
        return change

    async def edit(
        self, guild_id: int, user_id: int, name: str, changes: Mapping[str, object]
    ) -> RestaurantChange | None:
        """Change some fields of one restaurant (None: they already had those values)."""

        def decide(snapshot: CatalogSnapshot) -> list[RestaurantWrite]:
            record = _find(snapshot, name)
            current = RestaurantEntry.of(record.fields)
            entry = validate_entry({**current.model_dump(), **changes})
            if entry == current:
                return []
            _name_taken(snapshot, entry.name, other_than=record.id)
            return [RestaurantWrite(record.id, entry.fields())]

        done = await self._change(guild_id, user_id, decide)
        return done[0] if done else None

    async def remove(self, guild_id: int, user_id: int, name: str) -> RestaurantChange:
        def decide(snapshot: CatalogSnapshot) -> list[RestaurantWrite]:
            record = _find(snapshot, name)
            upcoming = snapshot.upcoming.get(record.id, 0)
            if upcoming:
                bookings = "1 upcoming booking" if upcoming == 1 else f"{upcoming} upcoming bookings"
                raise CatalogError(
                    f"{record.name} has {bookings}, so it stays until they have passed (members keep "
                    "their tables); set tables_per_slot to 0 with /restaurants edit to stop new bookings."
                )
            return [RestaurantWrite(record.id, None)]

        [change] = await self._change(guild_id, user_id, decide)
        return change

    async def import_csv(self, guild_id: int, user_id: int, data: bytes) -> ImportSummary:
        """Add the file's new restaurants and update those it names (by name), all or nothing;
        restaurants the file leaves out stay as they are."""
        entries = parse_catalog_csv(data)
        unchanged = 0

        def decide(snapshot: CatalogSnapshot) -> list[RestaurantWrite]:
            nonlocal unchanged
            unchanged = 0
            by_name = {record.name.lower(): record for record in snapshot.restaurants}
            writes: list[RestaurantWrite] = []
            for entry in entries:
                record = by_name.get(entry.name.lower())
                if record is None:
                    writes.append(RestaurantWrite(None, entry.fields()))
                elif RestaurantEntry.of(record.fields) == entry:
                    unchanged += 1
                else:
                    writes.append(RestaurantWrite(record.id, entry.fields()))
            return writes

        changes = await self._change(guild_id, user_id, decide)
        return ImportSummary(
            added=[change.name for change in changes if change.action == "add"],
            updated=[change.name for change in changes if change.action == "edit"],
            unchanged=unchanged,
        )

    async def audit(self, guild_id: int, *, limit: int = 20) -> list[RestaurantChange]:
        return await self._store.catalog_audit(guild_id, limit=limit)

    async def _change(
        self, guild_id: int, user_id: int, decide: Callable[[CatalogSnapshot], Sequence[RestaurantWrite]]
    ) -> list[RestaurantChange]:
        return await self._store.change_catalog(
            guild_id, user_id, decide, upcoming_since=int(self._clock().timestamp())
        )
