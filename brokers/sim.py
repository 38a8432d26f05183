"""THE forex broker simulation: one pure-Python core for the Backtrader backtest and the training envs.

Netting account in USD over bid bars. Prices: longs buy at ask (= bid + spread) and sell at bid; a long
is marked at the bid, a short at the ask. Market orders submitted during bar ``t`` fill at bar ``t+1``'s
open. The step path (``on_bar``) takes scalar Python floats and an integer minute timestamp, so the env
can call it hundreds of thousands of times per second.

Per bar, in this order:
 1. swap for every 17:00 New York rollover crossed since the previous bar (triple on the configured weekday);
 2. pending market orders fill at the open (gaps are filled at the gapped open, never at the old price);
 3. the equity floor (set by a drawdown guard, ``risk.drawdown.DrawdownGuard``): the position closes at
    the price where equity net of the closing commission equals the floor, like a stop order, or at the
    open when a gap jumps past it (``equity_stop_gap``); checked before stop-loss/take-profit (pessimistic);
    then stop-loss / take-profit against the bar's range; if both lie inside one bar we assume the
    stop-loss was hit first (pessimistic), and a bar that opens beyond a level fills at the open;
 4. equity at the bar's worst price for the position (low bid for a long, high ask for a short) is
    recorded as ``worst_equity`` (the drawdown rules check it);
 5. stop-out: if margin level at the worst price is at or below ``stop_out_level`` the whole position is
    closed at that worst price (pessimistic, a broker liquidates intrabar);
 6. mark to market at the close.

An optional ``guard`` (duck-typed: ``before_bar(sim, minute)``, ``after_bar(sim, minute)``) runs around
each bar, so the backtest and the envs enforce drawdown rules with the same code. While ``halt_until``
is in the future, orders that would increase the position are rejected.

Spread is paid inside the fill prices; ``costs_spread`` attributes it (spread x opened units, in USD, at
each opening fill) so a report can show it, it is not charged twice.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from brokers.instruments import Instrument

_NY = ZoneInfo("America/New_York")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_FILLS: tuple = ()


def minute_of(ts: dt.datetime) -> int:
    """Minutes since the Unix epoch for a tz-aware timestamp: the sim's clock unit."""
    return int((ts - _EPOCH).total_seconds() // 60)


def utc_of(minute: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(minutes=minute)


def next_rollover(minute: int) -> tuple[int, int]:
    """First 17:00 New York rollover strictly after ``minute`` on a weekday, and the nights it counts.

    Friday's rollover carries a position over the weekend; the broker charges the weekend on the
    instrument's triple-swap weekday instead, so every weekday counts one night except that one.
    Returns (minute of the rollover, weekday in New York).
    """
    local = utc_of(minute).astimezone(_NY)
    day = local.date()
    while True:
        cand = dt.datetime(day.year, day.month, day.day, 17, 0, tzinfo=_NY)
        if cand > local and cand.weekday() < 5:
            return minute_of(cand), cand.weekday()
        day += dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``lots`` is signed (+ buy, - sell); money in USD."""

    order_id: int
    minute: int
    lots: float
    price: float
    commission: float
    spread_cost: float
    realised_pnl: float
    reason: str  # "market" | "stop_loss" | "take_profit" | "stop_out"
    opened_lots: float
    closed_lots: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """An order the broker refused, with the reason; never silently resized."""

    order_id: int
    minute: int
    lots: float
    reason: str


class ForexSim:
    """Netting forex account for one instrument.

    :param instrument: the symbol's contract facts and costs
    :param cash: initial balance in USD
    :param leverage: account leverage; margin rate is max(1/leverage, instrument floor)
    :param stop_out_level: margin level (equity / margin) at which the position is liquidated
    """

    def __init__(self, instrument: Instrument, cash: float = 100_000.0, leverage: float = 30.0,
                 stop_out_level: float = 0.5) -> None:
        if cash <= 0 or leverage <= 0:
            raise ValueError("cash and leverage must be positive")
        self.instrument = instrument
        self.initial_cash = float(cash)
        self.leverage = float(leverage)
        self.margin_rate = max(1.0 / leverage, instrument.min_margin_rate)
        self.stop_out_level = stop_out_level
        self._spreads = instrument.spread_table()
        self._contract = instrument.contract_size
        self._usd_quote = instrument.quote_is_account
        self._comm = instrument.commission_per_lot
        self.guard = None
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        self.balance = self.initial_cash
        self.lots = 0.0
        self.avg_price = 0.0
        self.sl: float | None = None
        self.tp: float | None = None
        self.realised_pnl = 0.0
        self.costs_spread = 0.0
        self.costs_commission = 0.0
        self.costs_swap = 0.0  # net swap paid; negative when carry was earned
        self.minute = -1
        self.bid = 0.0
        self.spread = 0.0
        self.equity = self.initial_cash
        self.worst_equity = self.initial_cash
        self._pending: list[tuple[int, float, float | None, float | None]] = []
        self._next_id = 1
        self._next_roll = -1
        self._roll_weekday = 0
        self.rejections: list[Rejection] = []
        self.stop_outs = 0
        self.equity_floor = -math.inf
        self.equity_stop_fired = False
        self.equity_stop_gap = False
        self.halt_until = -1
        if self.guard is not None:
            self.guard.reset()

    # ------------------------------------------------------------ valuation
    def _conv(self, price: float) -> float:
        return 1.0 if self._usd_quote else 1.0 / price

    def mark_price(self, bid: float, spread: float) -> float:
        """Price a position would close at: bid for a long, ask for a short."""
        return bid if self.lots >= 0 else bid + spread

    def unrealised_at(self, price: float) -> float:
        """USD P&L of the open position if it closed at ``price``."""
        if self.lots == 0.0:
            return 0.0
        return self.lots * self._contract * (price - self.avg_price) * self._conv(price)

    def margin_for(self, lots: float, price: float) -> float:
        """USD margin needed to hold ``lots`` at ``price``."""
        return abs(lots) * self._contract * price * self._conv(price) * self.margin_rate

    @property
    def margin_used(self) -> float:
        return self.margin_for(self.lots, self.bid) if self.lots else 0.0

    @property
    def unrealised_pnl(self) -> float:
        return self.equity - self.balance

    @property
    def pending_lots(self) -> float:
        return sum(p[1] for p in self._pending)

    # --------------------------------------------------------------- orders
    def submit(self, lots: float, sl: float | None = None, tp: float | None = None) -> int | Rejection:
        """Queue a market order for the next bar's open; returns its id or a Rejection with the reason.

        ``sl``/``tp`` attach to the resulting position (replacing earlier levels).
        """
        oid = self._next_id
        self._next_id += 1
        lots = round(lots, 8)  # unit <-> lot conversions upstream leave float dust (0.009999999999999709)
        reason = self.instrument.lots_ok(lots) if lots else "size is zero"
        if reason is None and self.minute < self.halt_until and abs(self.lots + self.pending_lots + lots) > abs(
                self.lots + self.pending_lots):
            until = "for good" if self.halt_until >= 2**62 else f"until {utc_of(self.halt_until):%Y-%m-%d %H:%M} UTC"
            reason = f"halted by the drawdown rules {until}: only reducing orders are accepted"
        if reason is None and self.bid > 0:
            target = self.lots + self.pending_lots + lots
            price = self.bid + (self.spread if lots > 0 else 0.0)
            need = self.margin_for(target, price)
            if need > self.equity and abs(target) > abs(self.lots):
                reason = f"insufficient margin: {need:,.2f} USD needed, equity {self.equity:,.2f} USD"
        if reason is not None:
            rej = Rejection(oid, self.minute, lots, reason)
            self.rejections.append(rej)
            return rej
        self._pending.append((oid, float(lots), sl, tp))
        return oid

    def submit_target(self, target_lots: float, sl: float | None = None,
                      tp: float | None = None) -> int | Rejection | None:
        """Order the difference to reach ``target_lots`` (net of pending orders); None if already there."""
        delta = round(target_lots - self.lots - self.pending_lots, 8)
        if delta == 0.0:
            return None
        return self.submit(delta, sl, tp)

    def cancel(self, order_id: int) -> bool:
        """Cancel one pending order; False if it is not pending (filled, rejected or unknown)."""
        for i, p in enumerate(self._pending):
            if p[0] == order_id:
                del self._pending[i]
                return True
        return False

    def cancel_pending(self) -> list[int]:
        ids = [p[0] for p in self._pending]
        self._pending.clear()
        return ids

    # ------------------------------------------------------------ execution
    def _execute(self, oid: int, lots: float, price: float, spread: float, reason: str) -> Fill:
        """Apply a fill of signed ``lots`` at ``price`` to the position and balance."""
        old = self.lots
        conv = self._conv(price)
        closed = 0.0
        if old != 0.0 and (old > 0) != (lots > 0):
            closed = -old if abs(lots) >= abs(old) else lots
        opened = lots - closed
        pnl = 0.0
        if closed:
            pnl = -closed * self._contract * (price - self.avg_price) * conv
        new = round(old + lots, 8)
        if opened:
            base = old + closed  # position left after the closing part
            self.avg_price = price if base == 0.0 else (base * self.avg_price + opened * price) / (base + opened)
        if new == 0.0:
            self.avg_price = 0.0
        if new == 0.0 or (old and (old > 0) != (new > 0)):  # flat or flipped: old levels no longer apply
            self.sl = self.tp = None
        self.lots = new
        commission = abs(lots) * self._comm
        spread_cost = abs(opened) * self._contract * spread * conv
        self.balance += pnl - commission
        self.realised_pnl += pnl
        self.costs_commission += commission
        self.costs_spread += spread_cost
        return Fill(oid, self.minute, lots, price, commission, spread_cost, pnl, reason, opened, closed)

    def _apply_swap(self, nights: int, bid: float) -> None:
        inst = self.instrument
        pips = inst.swap_long_pips if self.lots > 0 else inst.swap_short_pips
        amount = abs(self.lots) * self._contract * pips * inst.pip_size * self._conv(bid) * nights
        self.balance += amount
        self.costs_swap -= amount

    def on_bar(self, minute: int, o: float, h: float, lo: float, c: float) -> tuple[Fill, ...] | list[Fill]:
        """Advance one bid bar (open time ``minute``); returns the fills it caused."""
        if minute <= self.minute:
            raise ValueError(f"bars must move forward in time: minute {minute} after {self.minute}")
        if not (lo > 0.0 and lo <= o <= h and lo <= c <= h):  # also rejects NaN
            raise ValueError(f"bad bar at {utc_of(minute):%Y-%m-%d %H:%M}: o={o} h={h} l={lo} c={c}")
        self.minute = minute
        spread = self._spreads[(minute // 60) % 24]
        self.spread = spread
        fills: tuple[Fill, ...] | list[Fill] = _NO_FILLS

        # 1. rollovers crossed since the previous bar (a position only changes at bar opens)
        if self._next_roll < 0:
            self._next_roll, self._roll_weekday = next_rollover(minute - 1)
        while minute >= self._next_roll:
            if self.lots:
                nights = 3 if self._roll_weekday == self.instrument.triple_swap_weekday else 1
                self._apply_swap(nights, o)
            self._next_roll, self._roll_weekday = next_rollover(self._next_roll)
        if self.guard is not None:
            self.guard.before_bar(self, minute)
        self.equity_stop_fired = self.equity_stop_gap = False

        # 2. pending market orders at the open
        if self._pending:
            fills = []
            pending, self._pending = self._pending, []
            for oid, lots, sl, tp in pending:
                price = o + spread if lots > 0 else o
                target = self.lots + lots
                if abs(target) > abs(self.lots):
                    need = self.margin_for(target, price)
                    equity_now = self.balance + self.unrealised_at(self.mark_price(o, spread))
                    if need > equity_now:
                        self.rejections.append(Rejection(
                            oid, minute, lots,
                            f"insufficient margin at fill: {need:,.2f} USD needed, equity {equity_now:,.2f} USD"))
                        continue
                fills.append(self._execute(oid, lots, price, spread, "market"))
                if self.lots and (sl is not None or tp is not None):
                    self.sl, self.tp = sl, tp

        # 3. equity floor, then stop-loss / take-profit inside the bar
        if self.lots and self.equity_floor > -math.inf:
            fill = self._check_equity_floor(o, h, lo, spread)
            if fill is not None:
                fills = [*fills, fill]
        if self.lots and (self.sl is not None or self.tp is not None):
            fill = self._check_brackets(o, h, lo, spread)
            if fill is not None:
                fills = [*fills, fill]

        # 4./5. worst price, stop-out
        if self.lots:
            worst = lo if self.lots > 0 else h + spread
            self.worst_equity = self.balance + self.unrealised_at(worst)
            margin = self.margin_for(self.lots, worst)
            if self.worst_equity <= self.stop_out_level * margin:
                self.stop_outs += 1
                fills = [*fills, self._execute(0, -self.lots, worst, spread, "stop_out")]
        # 6. mark at the close
        self.bid = c
        if self.lots:
            self.equity = self.balance + self.unrealised_at(c if self.lots > 0 else c + spread)
        else:
            self.equity = self.balance
            self.worst_equity = self.balance
        if self.guard is not None:
            self.guard.after_bar(self, minute)
        return fills

    def _check_equity_floor(self, o: float, h: float, lo: float, spread: float) -> Fill | None:
        """Close at the price where equity after the closing commission equals the floor."""
        lots, units = self.lots, self.lots * self._contract
        room = self.equity_floor + abs(lots) * self._comm - self.balance  # unrealised P&L at the floor
        if self._usd_quote:
            close_px = self.avg_price + room / units
        else:  # P&L = units * (p - avg) / p  =>  p = avg / (1 - room / units)
            k = 1.0 - room / units
            close_px = self.avg_price / k if k > 0 else (math.inf if lots < 0 else 0.0)
        if lots > 0:  # sells at bid
            if lo > close_px:
                return None
            gap = o <= close_px
            price = o if gap else close_px
        else:  # buys at ask
            if h + spread < close_px:
                return None
            gap = o + spread >= close_px
            price = o + spread if gap else close_px
        self.equity_stop_fired = True
        self.equity_stop_gap = gap
        return self._execute(0, -lots, price, spread, "equity_stop")

    def _check_brackets(self, o: float, h: float, lo: float, spread: float) -> Fill | None:
        sl, tp, long = self.sl, self.tp, self.lots > 0
        # prices the position closes at: a long sells at bid, a short buys at ask
        po, ph, pl = (o, h, lo) if long else (o + spread, h + spread, lo + spread)
        if long:
            if sl is not None and pl <= sl:
                return self._execute(0, -self.lots, min(po, sl), spread, "stop_loss")
            if tp is not None and ph >= tp:
                return self._execute(0, -self.lots, max(po, tp), spread, "take_profit")
        else:
            if sl is not None and ph >= sl:
                return self._execute(0, -self.lots, max(po, sl), spread, "stop_loss")
            if tp is not None and pl <= tp:
                return self._execute(0, -self.lots, min(po, tp), spread, "take_profit")
        return None
