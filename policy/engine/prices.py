"""Model list prices (USD per 1M input/output tokens), shared by deploy-time checks and the gateway.

A model is priced when this table knows its name or the agent declares a price
(`spec.budget.price_per_1m_tokens`). The control plane refuses to deploy an agent whose
model is neither (a model nobody priced must never be counted as free), and the gateway
charges runs with the declared price first, then its own overrides, then this table.
"""

from __future__ import annotations

from collections.abc import Mapping

# model → (USD per 1M input tokens, USD per 1M output tokens); list prices at the time of
# writing. The demo provider is offline and really costs nothing.
DEFAULT_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "demo": (0.0, 0.0),
}


def known_price(model: str) -> tuple[float, float] | None:
    return DEFAULT_PRICES.get(model)


def model_price(model: str, declared: tuple[float, float] | None) -> tuple[float, float] | None:
    """The price an agent's calls are charged: its declared price, else the table's."""
    return declared if declared is not None else known_price(model)


__all__ = ["DEFAULT_PRICES", "known_price", "model_price"]
