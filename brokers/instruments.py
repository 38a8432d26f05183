"""Instrument facts and per-symbol costs: the single definition used by the backtest, the envs and live.

Values come from ``configs/instruments.yaml``. The account currency is USD, so an instrument must quote
in USD (EURUSD, XAUUSD) or have USD as its base (USDJPY: quote-currency amounts convert at the current
rate, i.e. divided by the instrument's own price).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from configs import load_yaml

ACCOUNT_CURRENCY = "USD"


class UnknownSymbolError(KeyError):
    """A symbol missing from the instruments table: refusing beats guessing a pip value."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class Instrument:
    """Contract facts and costs of one symbol.

    :param symbol: e.g. ``"EURUSD"``
    :param base: base currency (``"XAU"`` for gold)
    :param quote: quote currency; prices are quote-currency per unit of base
    :param contract_size: units of base per lot (100,000 for FX, 100 oz for XAUUSD)
    :param pip_size: price increment called a pip (0.0001, 0.01 for JPY pairs, 0.1 for gold)
    :param digits: price decimals quoted by brokers
    :param lot_step: smallest lot increment; order sizes must be a multiple of it
    :param min_lot: smallest order
    :param max_lot: largest single order
    :param spread_pips: typical spread in liquid hours
    :param spread_hour_mult: spread multiplier per UTC hour (0..23), 1.0 where absent
    :param commission_per_lot: USD per lot per side
    :param swap_long_pips: financing per lot per night for a long, in pips (negative = charged)
    :param swap_short_pips: same for a short
    :param triple_swap_weekday: weekday (0=Monday) whose rollover counts three nights
    :param min_margin_rate: regulatory margin floor (1/30 = leverage 30:1)
    """

    symbol: str
    base: str
    quote: str
    contract_size: float
    pip_size: float
    digits: int
    lot_step: float
    min_lot: float
    max_lot: float
    spread_pips: float
    commission_per_lot: float
    swap_long_pips: float
    swap_short_pips: float
    triple_swap_weekday: int
    min_margin_rate: float
    spread_hour_mult: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if ACCOUNT_CURRENCY not in (self.base, self.quote):
            raise ValueError(
                f"{self.symbol}: account currency {ACCOUNT_CURRENCY} must be the base or quote currency"
            )
        if self.spread_pips < 0 or self.commission_per_lot < 0:
            raise ValueError(f"{self.symbol}: spread and commission must be >= 0")
        step = self.lot_step * self.contract_size
        if step < 1 or abs(step - round(step)) > 1e-9:
            raise ValueError(f"{self.symbol}: lot_step x contract_size must be a whole number of units, got {step}")

    @property
    def step_units(self) -> int:
        """Units of the base currency in one lot step (1,000 for 0.01 FX lots, 1 oz for 0.01 gold lots)."""
        return round(self.lot_step * self.contract_size)

    def units(self, lots: float) -> int:
        """Signed ``lots`` as a whole number of units (nearest): positions are kept in these, so flat is 0."""
        return round(lots * self.contract_size)

    @property
    def quote_is_account(self) -> bool:
        return self.quote == ACCOUNT_CURRENCY

    def to_account(self, amount_quote: float, price: float) -> float:
        """Convert a quote-currency amount to USD at ``price`` (this instrument's current rate)."""
        return amount_quote if self.quote == ACCOUNT_CURRENCY else amount_quote / price

    def spread_price(self, hour_utc: int) -> float:
        """Spread in price units for a bar starting in ``hour_utc``."""
        return self.spread_pips * self.pip_size * self.spread_hour_mult.get(hour_utc, 1.0)

    def spread_table(self) -> tuple[float, ...]:
        """Spread in price units for each UTC hour, for the hot path."""
        return tuple(self.spread_price(h) for h in range(24))

    def pip_value(self, lots: float, price: float) -> float:
        """USD value of one pip for ``lots`` at ``price`` (USDJPY depends on the rate)."""
        return self.to_account(lots * self.contract_size * self.pip_size, price)

    def lots_ok(self, lots: float) -> str | None:
        """Reason why ``lots`` (unsigned) is not a valid order size, or None."""
        a = abs(lots)
        units = a * self.contract_size
        if abs(units - round(units)) > 1e-6 or round(units) % self.step_units:
            return f"size {a} lots is not a multiple of the lot step {self.lot_step}"
        if a < self.min_lot - 1e-12:
            return f"size {a} lots is below the minimum {self.min_lot}"
        if a > self.max_lot + 1e-12:
            return f"size {a} lots is above the maximum {self.max_lot}"
        return None

    def round_lots(self, lots: float) -> float:
        """Round a signed lot amount down (towards zero) to the lot step: for strategies, never the broker."""
        steps = int(abs(lots) / self.lot_step + 1e-9)
        return round(steps * self.lot_step * (1 if lots >= 0 else -1), 8)


def _build(symbol: str, raw: dict[str, Any], defaults: dict[str, Any]) -> Instrument:
    merged = {**defaults, **raw}
    mult = {int(h): float(m) for h, m in (merged.pop("spread_hour_mult", None) or {}).items()}
    return Instrument(symbol=symbol, spread_hour_mult=mult, **merged)


def instruments() -> dict[str, Instrument]:
    """All configured instruments by symbol."""
    cfg = load_yaml("instruments")
    return {s: _build(s, raw, cfg["defaults"]) for s, raw in cfg["instruments"].items()}


def get_instrument(symbol: str) -> Instrument:
    """The instrument for ``symbol``; unknown symbols fail with the list of known ones."""
    table = instruments()
    key = symbol.upper()
    if key not in table:
        raise UnknownSymbolError(f"unknown symbol {symbol!r}; known: {', '.join(sorted(table))}")
    return table[key]
