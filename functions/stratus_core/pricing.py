"""The price catalog: per model, per million prompt and completion tokens, in exact Decimal.

`tiers` scales a model's prices by lane: a batch line or a `service_tier: "flex"` request waits for
a warm endpoint instead of keeping one running, and pays the fraction given (OpenAI's Batch API and
flex tier are half price; so is the shipped catalog). A lane the catalog does not name pays in full.
The multiplier is exact too (a decimal string), so a cost is still the exact product, never rounded."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from stratus_core.errors import NotFound

PRICE_UNIT_EXPONENT = 6
"""Prices are per 10**6 tokens: a cost is the price times the tokens, shifted this many places."""


def plain_decimal(value: Decimal) -> str:
    """Exact, positional and without trailing zeros: `Decimal("5E-8")` → `"0.00000005"`."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


Money = Annotated[Decimal, PlainSerializer(plain_decimal, return_type=str, when_used="json")]
"""An exact amount of money; JSON carries it as a string so that no float ever rounds it."""


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_per_million: Decimal = Field(ge=0)
    completion_per_million: Decimal = Field(ge=0)
    owned_by: str = "stratus"


class Cost(BaseModel):
    prompt_cost: Decimal
    completion_cost: Decimal

    @property
    def total(self) -> Decimal:
        return self.prompt_cost + self.completion_cost


class PriceCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    models: dict[str, ModelPrice]
    tiers: dict[Literal["interactive", "flex", "batch"], Decimal] = Field(
        default_factory=dict, description="Price multiplier per lane (absent: 1)."
    )

    @field_validator("tiers")
    @classmethod
    def _fractions(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if any(not 0 <= multiplier <= 1 for multiplier in value.values()):
            raise ValueError("a tier's multiplier is between 0 and 1")
        return value

    def price(self, model: str) -> ModelPrice:
        try:
            return self.models[model]
        except KeyError:
            raise NotFound("model", model) from None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, lane: str = "interactive") -> Cost:
        """Exact cost: `scaleb` moves the decimal point, so no rounding happens here."""
        price = self.price(model)
        multiplier = self.tiers.get(lane, Decimal(1))  # type: ignore[call-overload]
        return Cost(
            prompt_cost=(price.prompt_per_million * prompt_tokens * multiplier).scaleb(-PRICE_UNIT_EXPONENT),
            completion_cost=(price.completion_per_million * completion_tokens * multiplier).scaleb(
                -PRICE_UNIT_EXPONENT
            ),
        )


@lru_cache(maxsize=4)
def load_catalog(override: str | None = None) -> PriceCatalog:
    """`override` (the template's `PriceCatalog` parameter, as JSON), else the catalog shipped with the code."""
    if override:
        return PriceCatalog.model_validate_json(override)
    text = resources.files("stratus_core").joinpath("catalog.json").read_text(encoding="utf-8")
    return PriceCatalog.model_validate(json.loads(text))
