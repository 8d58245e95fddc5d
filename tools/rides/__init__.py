"""Ride ordering: estimate a fare, order a ride (after the user confirms), list, cancel.

`arguments` (what the model sends), `model` (what tools and providers speak), `definitions` (the
tools), and the two providers a guild chooses between: `builtin` (known places, the fare model in
`tools.fares`, rides in SQLite) and `http` (an external ride API; its docstring is the contract).
"""

from tools.rides.arguments import CancelRideArgs, EstimateRideArgs, ListRidesArgs, OrderRideArgs
from tools.rides.builtin import BuiltinRideProvider
from tools.rides.definitions import FAMILY, RideTools
from tools.rides.http import HttpRideProvider
from tools.rides.model import RideProvider

__all__ = [
    "FAMILY",
    "BuiltinRideProvider",
    "CancelRideArgs",
    "EstimateRideArgs",
    "HttpRideProvider",
    "ListRidesArgs",
    "OrderRideArgs",
    "RideProvider",
    "RideTools",
]
