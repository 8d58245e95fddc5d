"""Interactions as a user sends them: slash commands (with options resolved as Discord resolves them),
autocomplete while typing, button clicks, select menus and modal submits, each an INTERACTION_CREATE
with a token the bot answers through the REST routes in ``rest_interactions``."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from .constants import (
    ATTACHMENT_SIZE_LIMIT_BYTES,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMMAND,
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
)
from .gateway import DiscordGateway
from .models import (
    CallbackRecord,
    FakeChannel,
    FakeRole,
    FakeUser,
    InteractionRecord,
    Json,
    StoredMessage,
    Upload,
    walk_components,
)


class UserInteractions(DiscordGateway):
    """Every interaction dispatched, by id (``interactions``), with what the bot did with it."""

    def __init__(self, *, interaction_deadline_s: float, **options: Any) -> None:
        super().__init__(**options)
        self.interaction_deadline_s = interaction_deadline_s
        self.interactions: dict[int, InteractionRecord] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | int,
        channel_id: int,
    ) -> InteractionRecord:
        """A user runs ``/name`` (``"group sub"`` for subcommands) with ``options`` by option name.

        The command must have been registered (synced) by the bot, as on Discord. Option values are
        plain values; users, channels and roles may be given as their fakes or ids, attachments as
        ``Upload``s. The interaction's guild is the channel's.
        """
        channel = self.channels[channel_id]
        data = self._command_data(name, options or {}, channel, focused=None)
        return await self._dispatch_interaction(INTERACTION_COMMAND, data, self._user(user), channel)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: FakeUser | int,
        channel_id: int,
    ) -> InteractionRecord:
        """A user is typing option ``focused`` of ``/name``; the bot's choices land in
        ``record.autocomplete_choices``. Required options may still be missing, as while typing."""
        channel = self.channels[channel_id]
        data = self._command_data(name, options, channel, focused=focused)
        return await self._dispatch_interaction(INTERACTION_AUTOCOMPLETE, data, self._user(user), channel)

    def _command_data(
        self, name: str, options: Mapping[str, Any], channel: FakeChannel, *, focused: str | None
    ) -> Json:
        parts = name.split()
        command = None
        if channel.guild_id is not None:
            command = self.guild_commands.get(channel.guild_id, {}).get(parts[0])
        command = command or self.global_commands.get(parts[0])
        if command is None or command.get("type", 1) != 1:
            raise LookupError(f"/{parts[0]} is not a registered slash command (did the bot sync its tree?)")
        resolved: Json = {}
        schema: list[Json] = command.get("options") or []
        top: list[Json] = []
        leaf = top
        for part in parts[1:]:
            sub = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"/{name}: no subcommand {part!r}")
            node: Json = {"name": part, "type": sub["type"], "options": []}
            leaf.append(node)
            leaf = node["options"]
            schema = sub.get("options") or []
        leaf.extend(self._command_options(schema, options, channel, resolved, focused=focused))
        data: Json = {"id": command["id"], "name": parts[0], "type": 1, "options": top}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    def _command_options(
        self,
        schema: list[Json],
        values: Mapping[str, Any],
        channel: FakeChannel,
        resolved: Json,
        *,
        focused: str | None,
    ) -> list[Json]:
        by_name = {o["name"]: o for o in schema}
        unknown = set(values) - set(by_name)
        if focused is not None and focused not in values:
            raise ValueError(f"give the focused option {focused!r} the text typed so far")
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; the command has {sorted(by_name)}")
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing and focused is None:
            raise ValueError(f"required options missing: {missing}")
        guild = self._guild_of(channel)
        built = []
        for option_name, value in values.items():
            kind = by_name[option_name]["type"]
            if option_name == focused:  # what has been typed so far, always a string
                built.append({"name": option_name, "type": kind, "value": str(value), "focused": True})
                continue
            if (
                kind in (6, 9)
                and isinstance(value, FakeUser | int)
                and (isinstance(value, FakeUser) or value in self.users)
            ):
                user = self._user(value)
                resolved.setdefault("users", {})[str(user.id)] = user.payload()
                if guild is not None and user.id in guild.members:
                    member = guild.members[user.id].payload(
                        with_user=False, permissions=self.channel_permissions(channel, user.id)
                    )
                    resolved.setdefault("members", {})[str(user.id)] = member
                value = str(user.id)
            elif kind == 7:
                target = value if isinstance(value, FakeChannel) else self.channels[int(value)]
                entry = self.channel_payload(target)
                entry["permissions"] = str(self.channel_permissions(target, self.bot_user.id))
                resolved.setdefault("channels", {})[str(target.id)] = entry
                value = str(target.id)
            elif kind in (8, 9):
                role = value if isinstance(value, FakeRole) else guild.roles[int(value)] if guild else None
                if role is None:
                    raise ValueError(f"option {option_name}: no such role {value!r}")
                resolved.setdefault("roles", {})[str(role.id)] = role.payload()
                value = str(role.id)
            elif kind == 11:
                if not isinstance(value, Upload):
                    raise ValueError(f"option {option_name} is an attachment: pass an Upload")
                attachment = self._attachment(channel.id, value)
                resolved.setdefault("attachments", {})[attachment["id"]] = attachment
                value = attachment["id"]
            built.append({"name": option_name, "type": kind, "value": value})
        return built

    async def click_button(
        self, message_id: int, custom_id: str, *, user: FakeUser | int
    ) -> InteractionRecord:
        """A user clicks an enabled button of a message; INTERACTION_CREATE (type 3) goes to the bot."""
        message = self.messages[message_id]
        button = self._find_component(message, custom_id)
        if button.get("type") != 2:
            raise ValueError(f"component {custom_id!r} is not a button")
        data = {"custom_id": custom_id, "component_type": 2}
        if "id" in button:
            data["id"] = button["id"]
        return await self._dispatch_interaction(
            INTERACTION_COMPONENT, data, self._user(user), self.channels[message.channel_id], message=message
        )

    async def choose(
        self, message_id: int, custom_id: str, values: Sequence[str], *, user: FakeUser | int
    ) -> InteractionRecord:
        """A user picks ``values`` in a select menu of a message."""
        message = self.messages[message_id]
        select = self._find_component(message, custom_id)
        kind = int(select.get("type", 0))
        if kind not in (3, 5, 6, 7, 8):
            raise ValueError(f"component {custom_id!r} is not a select menu")
        if kind == 3:
            offered = {o["value"] for o in select.get("options", [])}
            if not set(values) <= offered:
                raise ValueError(f"{sorted(set(values) - offered)} are not options of {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": kind, "values": list(values)}
        return await self._dispatch_interaction(
            INTERACTION_COMPONENT, data, self._user(user), self.channels[message.channel_id], message=message
        )

    def _find_component(self, message: StoredMessage, custom_id: str) -> Json:
        for component in walk_components(message.components):
            if component.get("custom_id") == custom_id:
                if component.get("disabled"):
                    raise ValueError(
                        f"component {custom_id!r} is disabled; Discord would not let a user use it"
                    )
                return component
        raise ValueError(f"message {message.id} has no component {custom_id!r}")

    async def submit_modal(
        self,
        shown_by: InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: FakeUser | int | None = None,
    ) -> InteractionRecord:
        """Submit the modal the bot answered ``shown_by`` with (callback type 9), fields by custom_id."""
        modal = shown_by.modal
        if modal is None:
            raise ValueError(f"interaction {shown_by.id} was not answered with a modal")
        inputs = [c for c in walk_components(modal.get("components")) if c.get("custom_id")]
        unknown = set(values) - {c["custom_id"] for c in inputs}
        if unknown:
            raise ValueError(f"the modal has no fields {sorted(unknown)}")
        for component in inputs:
            if (
                component.get("type") == 4
                and component.get("required", True)
                and not values.get(component["custom_id"])
            ):
                raise ValueError(f"field {component['custom_id']!r} is required")

        def submitted(component: Json) -> Json:
            custom_id = component["custom_id"]
            if component.get("type") == 4:
                return {"type": 4, "custom_id": custom_id, "value": str(values.get(custom_id, ""))}
            chosen = values.get(custom_id, [])
            return {
                "type": component.get("type"),
                "custom_id": custom_id,
                "values": [chosen] if isinstance(chosen, str) else list(chosen),
            }

        rows = []
        for row in modal.get("components", []):
            if row.get("type") == 1:
                rows.append({"type": 1, "components": [submitted(c) for c in row.get("components", [])]})
            elif row.get("type") == 18 and isinstance(row.get("component"), dict):
                rows.append({"type": 18, "component": submitted(row["component"])})
        data = {"custom_id": modal["custom_id"], "components": rows}
        message = self.messages.get(shown_by.message_id) if shown_by.message_id else None
        return await self._dispatch_interaction(
            INTERACTION_MODAL_SUBMIT,
            data,
            self._user(user or shown_by.user),
            self.channels[shown_by.channel_id],
            message=message,
        )

    async def _dispatch_interaction(
        self,
        kind: int,
        data: Json,
        user: FakeUser,
        channel: FakeChannel,
        *,
        message: StoredMessage | None = None,
    ) -> InteractionRecord:
        if not self._live_sessions:
            raise RuntimeError("the bot is not connected to the gateway")
        guild = self._guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise ValueError(f"{user.name} is not a member of {guild.name}")
        interaction_id = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        channel_data = self.channel_payload(channel)
        channel_data["permissions"] = str(self.channel_permissions(channel, user.id))
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel_data,
            "token": token,
            "version": 1,
            "app_permissions": str(self.channel_permissions(channel, self.bot_user.id)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT_BYTES,
        }
        if guild is not None:
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=guild.members[user.id].payload(permissions=self.channel_permissions(channel, user.id)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=user.payload(), authorizing_integration_owners={"0": str(self.owner.id)}, context=1
            )
        if message is not None:
            payload["message"] = self.message_payload(message)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            user=user,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            message_id=message.id if message else None,
        )
        self.interactions[interaction_id] = record
        self._interactions_by_token[token] = record
        record.dispatched_at = asyncio.get_running_loop().time()
        await self._dispatch("INTERACTION_CREATE", payload, guild_id=channel.guild_id)
        return record

    async def wait_for_response(self, interaction: InteractionRecord, timeout: float = 5.0) -> CallbackRecord:  # noqa: ASYNC109
        """Wait for the bot's first callback (accepted or not) to an interaction."""
        await self.wait_for(lambda: bool(interaction.callbacks), timeout)
        return interaction.callbacks[0]
