"""Which entry of the pricing table a model name uses (claude-sonnet-4-5 → sonnet), and its price."""

from __future__ import annotations

from coordinator.config import ModelPrice


def priced_name(model: str, pricing: dict[str, ModelPrice]) -> str | None:
    """The pricing entry of a model: its own, else the longest entry its name contains, else None."""
    if model in pricing:
        return model
    lowered = model.lower()
    matches = [name for name in pricing if name.lower() in lowered]
    return max(matches, key=len) if matches else None


def price_of(model: str, pricing: dict[str, ModelPrice]) -> ModelPrice | None:
    """The price of a model: its own entry, else the tier its name contains (claude-sonnet-4-5 → sonnet)."""
    name = priced_name(model, pricing)
    return None if name is None else pricing[name]
