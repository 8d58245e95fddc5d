"""The conversation engine and its backends; nothing here imports discord."""

from bot.engine.engine import Backend, ConversationEngine, conversation_key
from bot.engine.turn import Speaker, TurnContext, TurnRequest, UserTurn

__all__ = [
    "Backend",
    "ConversationEngine",
    "Speaker",
    "TurnContext",
    "TurnRequest",
    "UserTurn",
    "conversation_key",
]
