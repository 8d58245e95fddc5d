"""Context windows: a model given one (``fake.context_windows[model]``) refuses a request over it with
OpenAI's ``context_length_exceeded``, unless ``truncation: "auto"`` drops the oldest items the model
sees (they stay in the conversation)."""

from __future__ import annotations

from .records import Truncation
from .state import OpenAIState
from .tokens import Json, estimate_context_tokens, item_tokens
from .wire import BadRequest

CONTEXT_EXCEEDED_MESSAGE = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)


class ContextWindows(OpenAIState):
    """The part of a conversation the model sees, and the truncations made, in ``truncations``."""

    def _fit_context_window(
        self, model: str, body: Json, conversation_id: str | None, prior: list[Json], new_items: list[Json]
    ) -> list[Json]:
        """The prior items the model sees: all, or (with `truncation: "auto"`) the newest that fit.

        Over the window without truncation, or when the new input alone is too long: OpenAI's 400.
        """
        truncation = body.get("truncation")
        if truncation not in (None, "auto", "disabled"):
            raise BadRequest(
                f"Invalid value: '{truncation}'. Supported values are: 'auto' and 'disabled'.",
                param="truncation",
                code="invalid_value",
            )
        window = self.context_windows.get(model)
        if window is None:
            return prior
        sizes = [item_tokens(item) for item in prior]
        total = estimate_context_tokens(new_items, body.get("instructions"), body.get("tools")) + sum(sizes)
        if total <= window:
            return prior
        if truncation != "auto" or not self.honours_truncation:
            raise BadRequest(CONTEXT_EXCEEDED_MESSAGE, param="input", code="context_length_exceeded")
        start = 0
        while start < len(prior) and total > window:
            total -= sizes[start]
            start += 1
        while start < len(prior) and prior[start].get("type") == "function_call_output":
            total -= sizes[start]  # an output whose call was dropped goes with it
            start += 1
        if total > window:
            raise BadRequest(CONTEXT_EXCEEDED_MESSAGE, param="input", code="context_length_exceeded")
        self.truncations.append(Truncation(model, conversation_id, start, len(prior) - start))
        return prior[start:]
