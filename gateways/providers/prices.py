"""Token usage → cost in USD, from a price table per model (per 1M input/output tokens).

The defaults are `policy.engine.prices.DEFAULT_PRICES` (the table the control plane checks at
deploy time). An agent's declared `spec.budget.price_per_1m_tokens` comes first, then the
operator's `KAIZEN_GATEWAY_PRICES` (JSON `{model: [input, output]}`), then the defaults.
The control plane refuses to deploy an agent priced by none of them; a model that still
reaches the gateway unpriced (a bundle built by hand) is charged nothing for cost, logged,
and its tokens still count against `tokens` budgets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from policy.engine.prices import DEFAULT_PRICES

from gateways.providers.base import Usage

log = logging.getLogger(__name__)
Price = tuple[float, float]


class PriceTable:
    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}
        self._warned: set[str] = set()

    @classmethod
    def from_json(cls, text: str | None) -> PriceTable:
        """`{"model": [input_per_1m, output_per_1m], …}`; raises ValueError when malformed."""
        if not text:
            return cls()
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("prices must be a JSON object {model: [input, output]}")
        out: dict[str, Price] = {}
        for model, pair in raw.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(p, int | float) and p >= 0 for p in pair)
            ):
                raise ValueError(f"price of {model!r} must be [input_per_1m, output_per_1m]")
            out[model] = (float(pair[0]), float(pair[1]))
        return cls(out)

    def known(self, model: str, declared: Price | None = None) -> bool:
        return declared is not None or model in self._prices

    def cost(self, model: str, usage: Usage, declared: Price | None = None) -> float:
        price = declared if declared is not None else self._prices.get(model)
        if price is None:
            if model not in self._warned:
                self._warned.add(model)
                log.error("model %r has no price: its calls are not counted in USD", model)
            return 0.0
        return (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1_000_000
