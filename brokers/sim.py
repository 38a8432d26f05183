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
each bar, so the backtest and the envs enforce drawdown rules with the same code. Outside
``TradingState.ACTIVE`` (set by the guard on a breach) orders that would increase the position are rejected; a
``REDUCING`` state ends at the first bar from ``resume_at`` on. ``ForexSim`` is a ``brokers.account.AccountView``.

Positions and orders are held in exact integer units of the base currency (lots x contract size: 1,000 per
0.01 FX lot, 1 oz per 0.01 gold lot), so a position that returns to flat is exactly 0 whatever the sequence
of fills (-4.44 + 3.90 + 0.54 lots in floats is not); ``lots`` is always ``units / contract_size``.

Spread is paid inside the fill prices: our bars are bids, so every *buy* pays it (a long when it opens, a
short when it buys back at the ask) and a sell pays nothing. ``costs_spread`` attributes it where it is paid
(bought units x that bar's spread, in USD) so a report can show it; it is not charged twice.

For a live terminal simulation a bar can be processed in two halves: ``open_bar`` (rollovers, the guard's
day start, pending orders at the open) when the bar starts and ``close_bar`` (floor, brackets, worst price,
stop-out, mark) when it completes; ``execute_pending`` fills an order submitted in between at the same open.
``on_bar`` is exactly ``open_bar`` followed by ``close_bar``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from brokers.account import TradingState
from brokers.instruments import Instrument
from feeds.calendar import next_rollover

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_FILLS: tuple = ()


def minute_of(ts: dt.datetime) -> int:
    """Minutes since the Unix epoch for a tz-aware timestamp: the sim's clock unit."""
    return int((ts - _EPOCH).total_seconds() // 60)


def utc_of(minute: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(minutes=minute)


def floor_price(units: int, avg_price: float, balance: float, floor: float, inst: Instrument) -> float:
    """The close price at which the equity of a position of ``units`` opened at ``avg_price``, after the closing
    commission, equals ``floor``: where the drawdown rules' equity stop sits (the simulation's stop inside a bar, the
    live broker's protective stop-loss at the terminal)."""
    room = floor + abs(units) / inst.contract_size * inst.commission_per_lot - balance  # unrealised P&L at the floor
    if inst.quote_is_account:
        return avg_price + room / units
    k = 1.0 - room / units  # P&L = units * (p - avg) / p  =>  p = avg / (1 - room / units)
    return avg_price / k if k > 0 else (math.inf if units < 0 else 0.0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``units`` (exact) and ``lots`` (= units / contract size) are signed (+ buy, - sell);
    ``opened_lots`` / ``closed_lots`` split it into the part that opened or added to a position and the part
    that closed one; money in USD."""

    order_id: int
    minute: int
    lots: float
    price: float
    commission: float
    spread_cost: float
    realised_pnl: float
    reason: str  # "market" | "stop_loss" | "take_profit" | "equity_stop" | "stop_out"
    opened_lots: float
    closed_lots: float
    units: int


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
    :param stop_out_level: margin level (equity / margin) at or below which the position is liquidated
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
        self.units = 0  # signed position in exact units of the base currency
        self.lots = 0.0  # always units / contract size (kept as an attribute: the env reads it every step)
        self.avg_price = 0.0
        self.sl: float | None = None
        self.tp: float | None = None
        self.realised_pnl = 0.0
        self.costs_spread = 0.0
        self.costs_commission = 0.0
        self.costs_swap = 0.0  # net swap paid; negative when carry was earned
        self.minute = -1
        self.open = 0.0  # the current bar's open (bid): where pending orders fill
        self.bid = 0.0
        self.spread = 0.0
        self.equity = self.initial_cash
        self.worst_equity = self.initial_cash
        self._pending: list[tuple[int, int, float | None, float | None]] = []  # (id, units, sl, tp)
        self._next_id = 1
        self._next_roll = -1
        self._roll_weekday = 0
        self._bar_open = False  # between open_bar and close_bar
        self.rejections: list[Rejection] = []
        self.stop_outs = 0
        self.equity_floor = -math.inf
        self.equity_stop_fired = False
        self.equity_stop_gap = False
        self.trading_state = TradingState.ACTIVE
        self.resume_at = -1  # minute from which a REDUCING state is ACTIVE again
        if self.guard is not None:
            self.guard.reset()

    # ------------------------------------------------------------ valuation
    def _conv(self, price: float) -> float:
        return 1.0 if self._usd_quote else 1.0 / price

    def mark_price(self, bid: float, spread: float) -> float:
        """Price a position would close at: bid for a long, ask for a short."""
        return bid if self.units >= 0 else bid + spread

    def unrealised_at(self, price: float) -> float:
        """USD P&L of the open position if it closed at ``price``."""
        if not self.units:
            return 0.0
        return self.units * (price - self.avg_price) * self._conv(price)

    def margin_for(self, lots: float, price: float) -> float:
        """USD margin needed to hold ``lots`` at ``price``."""
        return abs(lots) * self._contract * price * self._conv(price) * self.margin_rate

    @property
    def margin_used(self) -> float:
        return self.margin_for(self.lots, self.bid) if self.units else 0.0

    @property
    def unrealised_pnl(self) -> float:
        return self.equity - self.balance

    @property
    def pending_units(self) -> int:
        return sum(p[1] for p in self._pending)

    @property
    def pending_lots(self) -> float:
        return self.pending_units / self._contract

    # --------------------------------------------------------------- orders
    def submit(self, lots: float, sl: float | None = None, tp: float | None = None) -> int | Rejection:
        """Queue a market order for the next bar's open; returns its id or a Rejection with the reason.

        ``lots`` must be a multiple of the lot step (float dust such as 0.009999999999999709 is rounded to the
        nearest unit first). ``sl``/``tp`` attach to the resulting position (replacing earlier levels).
        """
        oid = self._next_id
        self._next_id += 1
        lots = round(lots, 8)
        reason = self.instrument.lots_ok(lots) if lots else "size is zero"
        units = self.instrument.units(lots) if reason is None else 0
        position = self.units + self.pending_units
        if reason is None and self.trading_state and abs(position + units) > abs(position):
            until = "for good" if self.trading_state is TradingState.HALTED else \
                f"until {utc_of(self.resume_at):%Y-%m-%d %H:%M} UTC"
            reason = f"halted by the drawdown rules {until}: only reducing orders are accepted"
        if reason is None and self.bid > 0:
            target = (position + units) / self._contract
            price = self.bid + (self.spread if units > 0 else 0.0)
            need = self.margin_for(target, price)
            if need > self.equity and abs(position + units) > abs(self.units):
                reason = f"insufficient margin: {need:,.2f} USD needed, equity {self.equity:,.2f} USD"
        if reason is not None:
            rej = Rejection(oid, self.minute, lots, reason)
            self.rejections.append(rej)
            return rej
        self._pending.append((oid, units, sl, tp))
        return oid

    def submit_target(self, target_lots: float, sl: float | None = None,
                      tp: float | None = None) -> int | Rejection | None:
        """Order the difference to reach ``target_lots`` (net of pending orders); None if already there."""
        delta = self.instrument.units(target_lots) - self.units - self.pending_units
        if delta == 0:
            return None
        return self.submit(delta / self._contract, sl, tp)

    def set_brackets(self, sl: float | None, tp: float | None) -> None:
        """Replace the open position's stop-loss and take-profit (a terminal's position modify). Set between
        bars, or at the open of a bar in progress (``open_bar``), they apply to that bar's range onwards."""
        if not self.units:
            raise ValueError("no open position to attach a stop-loss or take-profit to")
        self.sl, self.tp = sl, tp

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
    def _execute(self, oid: int, units: int, price: float, spread: float, reason: str) -> Fill:
        """Apply a fill of signed ``units`` at ``price`` to the position and balance."""
        old = self.units
        conv = self._conv(price)
        closed = 0
        if old and (old > 0) != (units > 0):
            closed = -old if abs(units) >= abs(old) else units
        opened = units - closed
        pnl = -closed * (price - self.avg_price) * conv if closed else 0.0
        new = old + units
        if opened:
            base = old + closed  # position left after the closing part
            self.avg_price = price if base == 0 else (base * self.avg_price + opened * price) / (base + opened)
        if new == 0:
            self.avg_price = 0.0
        if new == 0 or (old and (old > 0) != (new > 0)):  # flat or flipped: old levels no longer apply
            self.sl = self.tp = None
        self.units = new
        self.lots = new / self._contract
        lots = units / self._contract
        commission = abs(lots) * self._comm
        spread_cost = units * spread * conv if units > 0 else 0.0  # bid data: only a buy pays the spread
        self.balance += pnl - commission
        self.realised_pnl += pnl
        self.costs_commission += commission
        self.costs_spread += spread_cost
        return Fill(oid, self.minute, lots, price, commission, spread_cost, pnl, reason, opened / self._contract,
                    closed / self._contract, units)

    def _apply_swap(self, nights: int, bid: float) -> None:
        inst = self.instrument
        pips = inst.swap_long_pips if self.units > 0 else inst.swap_short_pips
        amount = abs(self.units) * pips * inst.pip_size * self._conv(bid) * nights
        self.balance += amount
        self.costs_swap -= amount

    def on_bar(self, minute: int, o: float, h: float, lo: float, c: float) -> tuple[Fill, ...] | list[Fill]:
        """Advance one bid bar (open time ``minute``); returns the fills it caused."""
        if not (lo > 0.0 and lo <= o <= h and lo <= c <= h):  # also rejects NaN
            raise ValueError(f"bad bar at {utc_of(minute):%Y-%m-%d %H:%M}: o={o} h={h} l={lo} c={c}")
        fills = self.open_bar(minute, o)
        more = self._close_bar(h, lo, c)
        return [*fills, *more] if more else fills

    def open_bar(self, minute: int, o: float) -> tuple[Fill, ...] | list[Fill]:
        """The first half of a bar: rollovers crossed since the previous bar, the guard's start-of-bar (new
        trading day, this bar's equity floor), then pending market orders at the open ``o``."""
        if minute <= self.minute:
            raise ValueError(f"bars must move forward in time: minute {minute} after {self.minute}")
        if not o > 0.0:
            raise ValueError(f"bad open at {utc_of(minute):%Y-%m-%d %H:%M}: {o}")
        if self._bar_open:
            raise RuntimeError("open_bar called twice: close the previous bar first")
        self.minute = minute
        self.open = o
        self.spread = self._spreads[(minute // 60) % 24]
        self._bar_open = True
        if self.trading_state is TradingState.REDUCING and minute >= self.resume_at:
            self.trading_state = TradingState.ACTIVE

        # 1. rollovers crossed since the previous bar (a position only changes at bar opens)
        if self._next_roll < 0:
            self._next_roll, self._roll_weekday = next_rollover(minute - 1)
        while minute >= self._next_roll:
            if self.units:
                nights = 3 if self._roll_weekday == self.instrument.triple_swap_weekday else 1
                self._apply_swap(nights, o)
            self._next_roll, self._roll_weekday = next_rollover(self._next_roll)
        if self.guard is not None:
            self.guard.before_bar(self, minute)
        self.equity_stop_fired = self.equity_stop_gap = False
        # 2. pending market orders at the open
        return self.execute_pending() if self._pending else _NO_FILLS

    def execute_pending(self) -> list[Fill]:
        """Fill the pending market orders at the current bar's open (buys at the ask); an order that no longer
        has the margin it needs is rejected here. ``open_bar`` calls it; a live terminal simulation calls it for
        an order submitted while the bar is forming, so that order fills at the same price as in a backtest."""
        if not self._bar_open:
            raise RuntimeError("execute_pending needs an open bar (open_bar)")
        o, spread, minute = self.open, self.spread, self.minute
        fills = []
        pending, self._pending = self._pending, []
        for oid, units, sl, tp in pending:
            price = o + spread if units > 0 else o
            target = self.units + units
            if abs(target) > abs(self.units):
                need = self.margin_for(target / self._contract, price)
                equity_now = self.balance + self.unrealised_at(self.mark_price(o, spread))
                if need > equity_now:
                    self.rejections.append(Rejection(
                        oid, minute, units / self._contract,
                        f"insufficient margin at fill: {need:,.2f} USD needed, equity {equity_now:,.2f} USD"))
                    continue
            fills.append(self._execute(oid, units, price, spread, "market"))
            if self.units and (sl is not None or tp is not None):
                self.sl, self.tp = sl, tp
        return fills

    def close_bar(self, h: float, lo: float, c: float) -> list[Fill]:
        """The second half of a bar, once its high, low and close are known: the equity floor, then stop-loss /
        take-profit inside the bar, the worst price, stop-out, and the mark at the close."""
        if not self._bar_open:
            raise RuntimeError("close_bar needs an open bar (open_bar)")
        o = self.open
        if not (lo > 0.0 and lo <= o <= h and lo <= c <= h):
            raise ValueError(f"bad bar at {utc_of(self.minute):%Y-%m-%d %H:%M}: o={o} h={h} l={lo} c={c}")
        return self._close_bar(h, lo, c)

    def _close_bar(self, h: float, lo: float, c: float) -> list[Fill]:
        o, spread = self.open, self.spread
        self._bar_open = False
        fills: list[Fill] = []
        # 3. equity floor, then stop-loss / take-profit inside the bar
        if self.units and self.equity_floor > -math.inf:
            fill = self._check_equity_floor(o, h, lo, spread)
            if fill is not None:
                fills.append(fill)
        if self.units and (self.sl is not None or self.tp is not None):
            fill = self._check_brackets(o, h, lo, spread)
            if fill is not None:
                fills.append(fill)

        # 4./5. worst price, stop-out
        if self.units:
            worst = lo if self.units > 0 else h + spread
            self.worst_equity = self.balance + self.unrealised_at(worst)
            margin = self.margin_for(self.lots, worst)
            if self.worst_equity <= self.stop_out_level * margin:
                self.stop_outs += 1
                fills.append(self._execute(0, -self.units, worst, spread, "stop_out"))
        # 6. mark at the close
        self.bid = c
        if self.units:
            self.equity = self.balance + self.unrealised_at(c if self.units > 0 else c + spread)
        else:
            self.equity = self.balance
            self.worst_equity = self.balance
        if self.guard is not None:
            self.guard.after_bar(self, self.minute)
        return fills

    def _check_equity_floor(self, o: float, h: float, lo: float, spread: float) -> Fill | None:
        """Close at the price where equity after the closing commission equals the floor."""
        lots, units = self.lots, self.units
        close_px = floor_price(units, self.avg_price, self.balance, self.equity_floor, self.instrument)
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
        return self._execute(0, -units, price, spread, "equity_stop")

    def _check_brackets(self, o: float, h: float, lo: float, spread: float) -> Fill | None:
        sl, tp, long = self.sl, self.tp, self.units > 0
        # prices the position closes at: a long sells at bid, a short buys at ask
        po, ph, pl = (o, h, lo) if long else (o + spread, h + spread, lo + spread)
        if long:
            if sl is not None and pl <= sl:
                return self._execute(0, -self.units, min(po, sl), spread, "stop_loss")
            if tp is not None and ph >= tp:
                return self._execute(0, -self.units, max(po, tp), spread, "take_profit")
        else:
            if sl is not None and ph >= sl:
                return self._execute(0, -self.units, max(po, sl), spread, "stop_loss")
            if tp is not None and pl <= tp:
                return self._execute(0, -self.units, min(po, tp), spread, "take_profit")
        return None
