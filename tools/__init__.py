"""The bot's function tools, a package or module per family; `register_builtin_tools` wires them up.

Each family gets its provider per guild (`booking_provider` / `ride_provider`): the built-in SQLite
one, or an HTTP API from the `[providers]` section of config.toml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bot.config import AppConfig
from bot.knowledge import KnowledgeBase
from bot.storage import Storage
from bot.tooling import ToolRegistry
from tools.common import Clock, utc_now
from tools.geocoding import geocoder_from_config
from tools.knowledge import register_knowledge_tools
from tools.places import Geocoder, KnownPlaces
from tools.providers import ProviderDirectory, configured_providers
from tools.restaurants import BookingProvider, BuiltinBookingProvider, HttpBookingProvider, RestaurantTools
from tools.rides import BuiltinRideProvider, HttpRideProvider, RideProvider, RideTools

__all__ = ["register_builtin_tools"]


def register_builtin_tools(
    registry: ToolRegistry,
    *,
    storage: Storage,
    config: AppConfig,
    secrets_env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    geocoder: Geocoder | None = None,
    knowledge: KnowledgeBase | None = None,
) -> None:
    """Add every built-in tool family to `registry` (which families a guild sees is its setting).

    `secrets_env` holds the providers' API keys (default: the process environment); `clock` gives
    aware UTC "now" (tests pin it); `geocoder` locates ride places (default: `[geocoder]` if set, else
    the known-places table, with rides to places it cannot locate metered);
    `knowledge` serves `search_knowledge` (the guild's /remember entries; left out without it).
    """
    env = os.environ if secrets_env is None else secrets_env
    now = clock or utc_now
    geocoder = geocoder or geocoder_from_config(config.geocoder, storage.geocode_cache)

    bookings: ProviderDirectory[BookingProvider] = configured_providers(
        "booking",
        builtin=BuiltinBookingProvider(storage.bookings),
        remote=HttpBookingProvider,
        serves="restaurants",
        config=config,
        env=env,
        setting=lambda settings: settings.booking_provider,
    )
    rides: ProviderDirectory[RideProvider] = configured_providers(
        "ride",
        builtin=BuiltinRideProvider(
            storage.rides, geocoder or KnownPlaces(), metered_when_unknown=geocoder is None
        ),
        remote=HttpRideProvider,
        serves="rides",
        config=config,
        env=env,
        setting=lambda settings: settings.ride_provider,
    )
    for tool in (*RestaurantTools(bookings, now).tools(), *RideTools(rides, now).tools()):
        registry.add(tool)

    if knowledge is not None:
        register_knowledge_tools(registry, knowledge)
