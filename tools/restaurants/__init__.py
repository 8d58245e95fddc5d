"""Restaurant booking: find a restaurant, book a table (after the user confirms), list, cancel.

`arguments` (what the model sends), `model` (what tools and providers speak), `definitions` (the
tools), and the two providers a guild chooses between: `builtin` (the SQLite catalog and its
seating rules) and `http` (an external booking API; its docstring is the contract).
"""

from tools.restaurants.arguments import (
    BookRestaurantArgs,
    CancelReservationArgs,
    FindRestaurantsArgs,
    ListReservationsArgs,
)
from tools.restaurants.builtin import BuiltinBookingProvider, tables_for
from tools.restaurants.definitions import FAMILY, RestaurantTools
from tools.restaurants.http import HttpBookingProvider
from tools.restaurants.model import BookingProvider

__all__ = [
    "FAMILY",
    "BookRestaurantArgs",
    "BookingProvider",
    "BuiltinBookingProvider",
    "CancelReservationArgs",
    "FindRestaurantsArgs",
    "HttpBookingProvider",
    "ListReservationsArgs",
    "RestaurantTools",
    "tables_for",
]
