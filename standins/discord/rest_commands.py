"""REST routes of application commands: global and per-guild, bulk overwrite (ids kept by name),
create, delete, validated as Discord validates them."""

from __future__ import annotations

import re

from aiohttp import web

from .errors import DiscordAPIError, FormErrors, json_response, no_content, unknown
from .models import Json, to_int
from .rest import ApiRequest
from .world import DiscordWorld

_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_MENU_NAME = re.compile(r"^[-_' \w]{1,32}$")  # user/message menus: mixed case, spaces


class CommandRoutes(DiscordWorld):
    """The command registry the bot syncs its tree into (``global_commands``, ``guild_commands``)."""

    def _command_store(self, req: ApiRequest) -> tuple[dict[str, Json], int | None]:
        if req.int_param("application_id") != self.application_id:
            raise DiscordAPIError(403, 50001, "Missing Access")
        guild_id = to_int(req.request.match_info.get("guild_id"))
        if guild_id is None:
            return self.global_commands, None
        if guild_id not in self.guilds:
            raise DiscordAPIError(403, 50001, "Missing Access")
        return self.guild_commands.setdefault(guild_id, {}), guild_id

    async def _h_commands_get(self, req: ApiRequest) -> web.StreamResponse:
        store, _ = self._command_store(req)
        return json_response(200, list(store.values()))

    async def _h_commands_put(self, req: ApiRequest) -> web.StreamResponse:
        """Bulk overwrite: the new list replaces the old; a command keeps its id if its name stays."""
        store, guild_id = self._command_store(req)
        body = req.body if isinstance(req.body, list) else None
        if body is None:
            raise DiscordAPIError(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Must be an array."}]},
            )
        errors = FormErrors()
        seen: set[tuple[int, str]] = set()
        for index, command in enumerate(body):
            self._validate_command(errors, [index], command)
            key = (int(command.get("type", 1)), str(command.get("name")))
            if key in seen:
                errors.add(
                    [index, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
        errors.raise_if_any()
        previous = dict(store)
        store.clear()
        for command in body:
            stored = self._stored_command(command, guild_id, previous.get(command["name"]))
            store[stored["name"]] = stored
        return json_response(200, list(store.values()))

    async def _h_command_create(self, req: ApiRequest) -> web.StreamResponse:
        store, guild_id = self._command_store(req)
        errors = FormErrors()
        self._validate_command(errors, [], req.json)
        errors.raise_if_any()
        existing = store.get(req.json["name"])
        stored = self._stored_command(req.json, guild_id, existing)
        store[stored["name"]] = stored
        return json_response(200 if existing else 201, stored)

    async def _h_command_delete(self, req: ApiRequest) -> web.StreamResponse:
        store, _ = self._command_store(req)
        command_id = req.param("command_id")
        for name, command in list(store.items()):
            if command["id"] == command_id:
                del store[name]
                return no_content()
        raise unknown("application command", 10063)

    def _validate_command(self, errors: FormErrors, path: list[str | int], command: Json) -> None:
        kind = int(command.get("type", 1))
        name = command.get("name")
        pattern = _COMMAND_NAME if kind == 1 else _MENU_NAME
        if not isinstance(name, str) or not pattern.match(name) or (kind == 1 and name != name.lower()):
            errors.add([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if kind == 1:
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                errors.add(
                    [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            self._validate_options(errors, [*path, "options"], command.get("options") or [])

    def _validate_options(self, errors: FormErrors, path: list[str | int], options: list[Json]) -> None:
        if len(options) > 25:
            errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        optional_seen = False
        for index, option in enumerate(options):
            name = option.get("name")
            if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
                errors.add(
                    [*path, index, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            description = option.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                errors.add(
                    [*path, index, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if option.get("type") in (1, 2):
                self._validate_options(errors, [*path, index, "options"], option.get("options") or [])
            elif option.get("required"):
                if optional_seen:
                    errors.add(
                        [*path, index, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                optional_seen = True
            if len(option.get("choices") or []) > 25:
                errors.add(
                    [*path, index, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

    def _stored_command(self, command: Json, guild_id: int | None, previous: Json | None) -> Json:
        stored: Json = {
            "id": previous["id"] if previous else str(self._ids.next()),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "type": int(command.get("type", 1)),
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description", ""),
            "description_localizations": command.get("description_localizations"),
            "default_member_permissions": command.get("default_member_permissions"),
            "dm_permission": command.get("dm_permission", True),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
            "nsfw": bool(command.get("nsfw", False)),
        }
        if command.get("options"):
            stored["options"] = command["options"]
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored
