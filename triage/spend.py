"""Model spend: prices, what a call cost, today's total and the daily cap.

Prices are dollars per million tokens from admin's `ModelPrice` rows, else settings'
`TRIAGE_MODEL_PRICES`. A model id matches its longest priced prefix (`claude-haiku-4-5-20251001`
is priced as `claude-haiku-4-5`); a model nobody priced is charged at the dearest known price, so
the daily cap errs on the safe side. Today is the UTC day.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from integrations.llm.base import Usage
from triage.models import ModelPrice, ProviderSettings, StepRun

logger = logging.getLogger(__name__)
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    model: str
    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal


@dataclass(frozen=True, slots=True)
class SpendStatus:
    spent_today: Decimal
    cap: Decimal | None
    reached: bool


def price_table() -> dict[str, Price]:
    """Settings' prices overlaid with admin's rows."""
    table = {
        model: Price(
            model, Decimal(p["input"]), Decimal(p["output"]), Decimal(p["cache_write"]), Decimal(p["cache_read"])
        )
        for model, p in getattr(settings, "TRIAGE_MODEL_PRICES", {}).items()
    }
    for row in ModelPrice.objects.all():
        table[row.model] = Price(
            row.model, row.input_per_mtok, row.output_per_mtok, row.cache_write_per_mtok, row.cache_read_per_mtok
        )
    return table


def price_for(*, model: str, table: dict[str, Price] | None = None) -> Price | None:
    table = price_table() if table is None else table
    if model in table:
        return table[model]
    prefixes = [m for m in table if model.startswith(m)]
    if prefixes:
        return table[max(prefixes, key=len)]
    if not table:
        return None
    logger.warning("no price for model %r: charging the dearest known price", model)
    return max(table.values(), key=lambda p: (p.output, p.input))


def call_cost(*, model: str, usage: Usage) -> Decimal:
    """Dollars one call cost: input, output, cache-write and cache-read tokens at the model's prices."""
    price = price_for(model=model)
    if price is None:
        return Decimal("0")
    total = (
        usage.tokens_in * price.input
        + usage.tokens_out * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    ) / MILLION
    return total.quantize(Decimal("0.000001"))


def provider_settings_current() -> ProviderSettings:
    """The provider settings (created empty, that is with settings' defaults, the first time they are read)."""
    return ProviderSettings.get_solo()


def daily_spend_cap() -> Decimal | None:
    """The cap in dollars, or None when there is none (admin's row first, then settings; 0 means none)."""
    row = provider_settings_current()
    cap = row.daily_spend_cap if row.daily_spend_cap is not None else getattr(settings, "TRIAGE_DAILY_SPEND_CAP", None)
    return Decimal(cap) if cap else None


def llm_spend_today(*, now: dt.datetime | None = None) -> Decimal:
    """Dollars every recorded model call cost since UTC midnight."""
    now = now or timezone.now()
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return StepRun.objects.filter(started_at__gte=midnight).aggregate(total=Sum("cost"))["total"] or Decimal("0")


def spend_status() -> SpendStatus:
    cap = daily_spend_cap()
    spent = llm_spend_today()
    return SpendStatus(spent_today=spent, cap=cap, reached=cap is not None and spent >= cap)


def spending_cap_reached() -> bool:
    """True when today's model spend has reached the daily cap: new calls go local or to a person."""
    return spend_status().reached
