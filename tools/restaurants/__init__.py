"""Restaurant booking: find a restaurant, book a table (after the user confirms), list, cancel.

`arguments` (what the model sends), `model` (what tools and providers speak), `definitions` (the
tools), and the two providers a guild chooses between: `builtin` (the SQLite catalog and its
seating rules) and `http` (an external booking API; its docstring is the contract). `catalog` is
how a server's admins run the built-in provider's catalog (`/restaurants`).
"""

from tools.restaurants.arguments import (
    BookRestaurantArgs,
    CancelReservationArgs,
    FindRestaurantsArgs,
    ListReservationsArgs,
)
from tools.restaurants.builtin import BuiltinBookingProvider, tables_for
from tools.restaurants.catalog import CatalogError, ImportSummary, RestaurantCatalog
from tools.restaurants.definitions import FAMILY, RestaurantTools
from tools.restaurants.http import HttpBookingProvider
from tools.restaurants.model import BookingProvider, RestaurantEntry

__all__ = [
    "FAMILY",
    "BookRestaurantArgs",
    "BookingProvider",
    "BuiltinBookingProvider",
    "CancelReservationArgs",
    "CatalogError",
    "FindRestaurantsArgs",
    "HttpBookingProvider",
    "ImportSummary",
    "ListReservationsArgs",
    "RestaurantCatalog",
    "RestaurantEntry",
    "RestaurantTools",
    "tables_for",
]
