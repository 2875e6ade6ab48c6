"""Token usage → cost in USD, from a price table per model (per 1M input/output tokens).

The defaults are list prices at the time of writing and are only a starting point: a
tenant overrides them with `KAIZEN_GATEWAY_PRICES` (JSON `{model: [input, output]}`) or
`PriceTable(overrides)`. Unknown models cost 0 and are reported by `known()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gateways.providers.base import Usage

# model → (USD per 1M input tokens, USD per 1M output tokens)
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "demo": (0.0, 0.0),
}


class PriceTable:
    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}

    @classmethod
    def from_json(cls, text: str | None) -> PriceTable:
        """`{"model": [input_per_1m, output_per_1m], …}`; raises ValueError when malformed."""
        if not text:
            return cls()
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("prices must be a JSON object {model: [input, output]}")
        out: dict[str, tuple[float, float]] = {}
        for model, pair in raw.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(p, int | float) and p >= 0 for p in pair)
            ):
                raise ValueError(f"price of {model!r} must be [input_per_1m, output_per_1m]")
            out[model] = (float(pair[0]), float(pair[1]))
        return cls(out)

    def known(self, model: str) -> bool:
        return model in self._prices

    def cost(self, model: str, usage: Usage) -> float:
        price_in, price_out = self._prices.get(model, (0.0, 0.0))
        return (usage.input_tokens * price_in + usage.output_tokens * price_out) / 1_000_000
