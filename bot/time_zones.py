"""Time zone names as people type them: checked once here, for the guild setting and the restaurants.

`zoneinfo.ZoneInfo` is not a validator: a name is a path into the tz database (and, with the tzdata
package, a module path), so a long or odd name raises OSError or even RecursionError rather than
"not found". A name is first held to the shape of IANA names, then looked up.
"""

from __future__ import annotations

import re
import zoneinfo

IANA_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,2}")
"""Area/Location[/Sub], each part letters, digits, `_`, `+` or `-` ("UTC", "Etc/GMT+5",
"America/Argentina/Buenos_Aires")."""
MAX_NAME_CHARS = 64  # the longest real name is about 32
MAX_SHOWN_CHARS = 40


def is_time_zone(name: str) -> bool:
    """Whether `name` is a time zone of the tz database (exactly as written, e.g. Europe/Paris)."""
    if len(name) > MAX_NAME_CHARS or IANA_NAME.fullmatch(name) is None:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def unknown_time_zone(name: str) -> str:
    """The sentence for a name that is not a time zone, quoting at most a short piece of it."""
    shown = name if len(name) <= MAX_SHOWN_CHARS else name[: MAX_SHOWN_CHARS - 1] + "…"
    return f"unknown time zone {shown!r} (use an IANA name like Europe/Paris)"
