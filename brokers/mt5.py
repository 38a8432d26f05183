"""The MetaTrader 5 live broker: a ``bt.BrokerBase`` that trades through ``stores.mt5.MT5Store``.

Market orders go out with ``order_send`` (our client order id as the comment, a magic number, the filling mode the
symbol allows); positions, balance and equity come from the terminal (``positions_get`` / ``account_info``), so
``getvalue`` / ``getcash`` / ``getposition`` / ``notify_order`` / ``notify_trade`` behave as Backtrader users
expect. Every intent and outcome goes into a SQLite journal (``brokers.journal``) before and after the request; an
uncertain outcome is reconciled through the terminal's deals (by client id) before anything else is sent, and an
order is never resent blindly. ``RETCODE_POLICY`` is the one table of what each trade server return code means.

The drawdown rules are the backtest's (``risk.drawdown.DrawdownGuard``, the same validator in the strategy),
driven bar by bar exactly as the simulation core drives them: ``before_bar`` with the account as it was at the last
close, then the terminal's state after the bar, the bar's worst price, ``after_bar`` (a breach flattens through
this broker and sets the trading state). Between bars the terminal itself holds a protective stop-loss at the price
where equity after the closing commission equals the next bar's floor (``brokers.sim.floor_price``, the price the
simulation's equity stop closes at), so the account is protected even while this process is down. The guard's state
and the trading state are journaled at every bar and restored at start.

What the agents observe of the account is what they observe in a backtest: ``spread`` is the cost model's spread
for the last closed bar's hour (``configs/instruments.yaml``; the terminal's real spread is checked against it and
a warning logged when it is more than twice as wide), ``bid`` that bar's close, ``equity`` and ``balance`` the
terminal's. Fills made during a bar are reported to Backtrader at the next bar, when a backtest reports them.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import backtrader as bt

from brokers.account import AccountView, TradingState
from brokers.bt_broker import BrokerFace, ForexCommInfo, execute_fill
from brokers.instruments import Instrument
from brokers.journal import Journal
from brokers.sim import Fill, Rejection, floor_price
from risk.drawdown import DrawdownGuard, DrawdownRules

log = logging.getLogger(__name__)
_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))

# MetaTrader 5's numbers (MQL5 reference: "Trade Server Return Codes", "Trade Operation Types", "Order Properties",
# "Deal Properties", "Symbol Properties"); the terminal simulator's constants are tested against the same values.
TRADE_ACTION_DEAL, TRADE_ACTION_SLTP = 1, 6
ORDER_TYPE_BUY, ORDER_TYPE_SELL = 0, 1
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2
ORDER_TIME_GTC = 0
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
DEAL_REASON_SL, DEAL_REASON_TP, DEAL_REASON_SO = 4, 5, 6
POSITION_TYPE_BUY = 0


class Action(Enum):
    """What the broker does with a trade server answer."""

    FILLED = "filled"  # executed (in full or, for DONE_PARTIAL, in part: the rest is a new request)
    CHECK_DEALS = "check_deals"  # accepted but not yet known to be executed (PLACED): find its deals
    RETRY_PRICE = "retry_price"  # the price moved: take a fresh tick and try again, a bounded number of times
    UNKNOWN = "unknown"  # the outcome is not known: reconcile through positions and deals before anything else
    NEXT_FILLING = "next_filling"  # the filling mode is not allowed: the next one the symbol allows
    REJECT = "reject"  # refused for a reason a retry cannot fix: report it
    HALT = "halt"  # the market or trading is closed: no new orders until it reopens, and say so
    BACKOFF = "backoff"  # too many requests: wait, then try again


RETCODE_POLICY: dict[int, tuple[str, Action]] = {
    10009: ("DONE", Action.FILLED),
    10010: ("DONE_PARTIAL", Action.FILLED),
    10008: ("PLACED", Action.CHECK_DEALS),
    10004: ("REQUOTE", Action.RETRY_PRICE),
    10020: ("PRICE_CHANGED", Action.RETRY_PRICE),
    10021: ("PRICE_OFF", Action.RETRY_PRICE),
    10012: ("TIMEOUT", Action.UNKNOWN),
    10011: ("ERROR", Action.UNKNOWN),
    10031: ("CONNECTION", Action.UNKNOWN),
    10030: ("INVALID_FILL", Action.NEXT_FILLING),
    10014: ("INVALID_VOLUME", Action.REJECT),
    10016: ("INVALID_STOPS", Action.REJECT),
    10019: ("NO_MONEY", Action.REJECT),
    10015: ("INVALID_PRICE", Action.REJECT),
    10013: ("INVALID", Action.REJECT),
    10006: ("REJECT", Action.REJECT),
    10018: ("MARKET_CLOSED", Action.HALT),
    10017: ("TRADE_DISABLED", Action.HALT),
    10027: ("CLIENT_DISABLES_AT", Action.HALT),
    10026: ("SERVER_DISABLES_AT", Action.HALT),
    10024: ("TOO_MANY_REQUESTS", Action.BACKOFF),
}
"""retcode -> (name, action); anything else is a rejection with its number"""


def policy(retcode: int | None) -> tuple[str, Action]:
    """The table's answer; ``None`` (no answer at all: a lost link or an IPC timeout) is an unknown outcome."""
    if retcode is None:
        return "NO_ANSWER", Action.UNKNOWN
    return RETCODE_POLICY.get(int(retcode), (f"RETCODE_{int(retcode)}", Action.REJECT))


class LiveAccount:
    """The terminal's account as ``brokers.account.AccountView``: what the strategy, the validator and the guard
    read, refreshed by the broker at every closed bar."""

    def __init__(self, broker: MT5Broker, instrument: Instrument, initial_cash: float, guard: DrawdownGuard) -> None:
        self._broker = broker
        self.instrument = instrument
        self.initial_cash = float(initial_cash)
        self.balance = self.equity = self.worst_equity = float(initial_cash)
        self.margin = 0.0
        self.units, self.lots, self.avg_price = 0, 0.0, 0.0
        self.ticket: int | None = None
        self.sl = self.tp = 0.0
        self.bid = self.spread = 0.0
        self.equity_floor = -math.inf
        self.equity_stop_fired = self.equity_stop_gap = False
        self.trading_state = TradingState.ACTIVE
        self.resume_at = -1
        self.guard: DrawdownGuard | None = guard

    def __repr__(self) -> str:
        return f"LiveAccount({self.instrument.symbol}, balance={self.balance:.2f}, lots={self.lots})"

    @property
    def margin_used(self) -> float:
        return self.margin

    @property
    def pending_lots(self) -> float:
        return 0.0  # market orders execute or fail while the request is answered

    def submit_target(self, target_lots: float, sl: float | None = None, tp: float | None = None) -> object:
        """Reach ``target_lots`` now (the guard's flatten): the difference goes out as a market order."""
        return self._broker.order_units(self._broker.instrument.units(target_lots) - self.units, reason="guard")

    def cancel_pending(self) -> list[int]:
        return []


@dataclass
class LiveStats:
    """What a live run reports in ``summary.json`` under ``live``."""

    orders: int = 0
    requests: int = 0
    retries: int = 0
    reconciled: int = 0
    unknown_outcomes: int = 0
    protective_updates: int = 0
    rejected: collections.Counter = None  # reason -> count

    def __post_init__(self) -> None:
        self.rejected = collections.Counter()


class MT5Broker(BrokerFace):
    """:param store: the ``MT5Store`` (connection, clock, server time)
    :param instrument: the symbol's facts and costs (our cost model: spreads the agents observe)
    :param rules: drawdown rules (prop mode by default, as in backtests)
    :param journal: the SQLite journal path (one per account and symbol; it survives restarts)
    :param initial_cash: the challenge's initial balance; None: the journal's, else the account's balance at start
    :param magic: our orders' magic number (the terminal marks their deals with it)
    :param deviation: allowed slippage in points for market orders
    :param max_retries: tries per order for requotes, filling modes and back-off
    :param protective_stop: keep a stop-loss at the drawdown floor's price on the terminal
    """

    def __init__(self, store: Any, instrument: Instrument, journal: Path, rules: DrawdownRules | None = None,
                 initial_cash: float | None = None, magic: int = 20_240_101, deviation: int = 20, max_retries: int = 4,
                 protective_stop: bool = True) -> None:
        super().__init__()
        self.store, self.instrument = store, instrument
        self.rules = rules or DrawdownRules.from_config()
        self.journal = Journal(journal)
        self.magic, self.deviation, self.max_retries = int(magic), int(deviation), int(max_retries)
        self.protective_stop = protective_stop
        self._initial_arg = initial_cash
        self.comminfo_fx = ForexCommInfo(instrument)
        self.stats = LiveStats()
        self.fills: list[Fill] = []
        self.rejections: list[Rejection] = []
        self._data = None
        self._last_len = 0
        self._pending_fills: list[tuple[bt.Order | None, Fill]] = []
        self._known_deals: set[int] = set()
        self._deal_cursor = 0.0  # server seconds from which to look for new deals
        self._halt: str | None = None  # why no new orders go out (market closed, trading disabled)
        self._halt_bar = -1
        self._protective_sl = 0.0
        self.intended_units = 0
        self.acct: LiveAccount | None = None
        self._filling: list[int] = []
        self._minute = -1

    @property
    def account(self) -> AccountView:
        return self.acct

    def set_data(self, data) -> None:
        self._data = data

    # ------------------------------------------------------------------ start: reconcile, restore
    def start(self) -> None:
        super().start()
        self.store.start(broker=self)
        self.store.on_reconnect.append(self._on_reconnect)
        info = self._call("account_info")
        initial = self._initial_arg or self.journal.get("initial_cash") or float(info.balance)
        self.journal.put("initial_cash", initial)
        guard = DrawdownGuard(self.rules, float(initial))
        saved = self.journal.get("guard")
        if saved is not None:
            guard.load_state_dict(saved)
        self.acct = LiveAccount(self, self.instrument, initial, guard)
        self.startingcash = float(initial)  # Backtrader's writer reads it
        trading = self.journal.get("trading_state")
        if trading is not None:
            self.acct.trading_state, self.acct.resume_at = TradingState(trading[0]), int(trading[1])
        sym = self._call("symbol_info", self.instrument.symbol)
        allowed = int(sym.filling_mode)
        self._filling = [m for m, flag in ((ORDER_FILLING_IOC, SYMBOL_FILLING_IOC), (ORDER_FILLING_FOK,
                                                                                    SYMBOL_FILLING_FOK))
                         if allowed & flag] + [ORDER_FILLING_RETURN]
        self._deal_cursor = float(self.store.to_server(self.store.now())) - 7 * 86400
        self._reconcile_journal()
        self._refresh()
        if acct_units := self.acct.units:  # a position found at start is the strategy's too (Oanda's data_started)
            self._fill_position = acct_units
            if self._data is not None:
                self.positions[self._data] = bt.Position(size=acct_units, price=self.acct.avg_price)
        known = {i.cid for i in self.journal.intents()}
        orphans = 0
        for d in self._deals_since(self._deal_cursor):  # what happened before this run is history, not fills
            self._known_deals.add(int(d.ticket))
            if int(d.magic) == self.magic and str(d.comment).startswith("mtf-") and d.comment not in known:
                # ours, but its intent never reached the journal (a power cut between writing and syncing it)
                units = self._signed_units(d)
                self.journal.intend(d.comment, self.store.to_utc(int(d.time)), -1, self.instrument.symbol, units,
                                    units)
                self.journal.resolve(d.comment, "filled", executed_units=units, price=float(d.price),
                                     deals=(int(d.ticket),), detail="adopted at start: a deal of ours without intent")
                known.add(d.comment)
                orphans += 1
        self._deal_cursor = float(self.store.to_server(self.store.now()))
        found = {"position_lots": self.acct.lots, "balance": self.acct.balance, "initial_cash": initial,
                 "reconciled_intents": self.stats.reconciled, "adopted_deals": orphans,
                 "trading_state": self.acct.trading_state.name,
                 "restored_guard": saved is not None}
        self.journal.event("start", found)
        log.info("live broker start: %s", found)

    def stop(self) -> None:
        """Persist the drawdown state, take the run's counters (``summary``), close the journal and the link."""
        if self.acct is not None:
            self._persist()
            self.summary = self.live_summary()
        self.journal.event("stop", {"position_lots": self.acct.lots if self.acct else None})
        self.journal.close()
        self.store.stop()

    summary: dict[str, Any] | None = None

    def _on_reconnect(self) -> None:
        self._reconcile_journal()

    def _reconcile_journal(self) -> None:
        """Resolve every intent whose outcome is unknown (a crash or a timeout) from the terminal's deals."""
        for intent in self.journal.open_intents():
            deals = self._deals_for(intent.cid, intent.created)
            executed = sum(self._signed_units(d) for d in deals)
            status = "filled" if executed == intent.units else ("partial" if executed else "not_executed")
            self.journal.resolve(intent.cid, status, executed_units=executed,
                                 price=float(deals[0].price) if deals else None,
                                 deals=tuple(int(d.ticket) for d in deals), detail="reconciled from deals")
            self.stats.reconciled += 1
            self.journal.event("reconciled", {"status": status, "executed_units": executed}, intent.cid)

    # ------------------------------------------------------------------ Backtrader's broker interface
    def getcash(self) -> float:
        return self.acct.balance

    def getvalue(self, datas=None) -> float:
        return self.acct.equity


    def cancel(self, order: bt.Order, bracket: bool = False):
        return None  # market orders are answered while they are sent: nothing is left to cancel


    def _submit(self, cls, owner, data, size, exectype, tradeid, info) -> bt.Order:
        self._owner = owner
        order = cls(owner=owner, data=data, size=size, exectype=exectype, tradeid=tradeid)
        order.addinfo(**info)
        order.addcomminfo(self.comminfo_fx)
        if data is not self._data:
            return self._reject(order, "this broker trades only its M1 feed (set_data)")
        if exectype not in (None, bt.Order.Market):
            return self._reject(order, "only market orders are supported; pass sl=/tp= for stops")
        order.submit(self)
        self.notify(order)
        self.order_units(round(order.size), order=order, sl=info.get("sl"), tp=info.get("tp"))
        return order

    def _reject(self, order: bt.Order, reason: str) -> bt.Order:
        log.warning("order rejected: %s", reason)
        self.stats.rejected[reason.split(":")[0]] += 1
        self.rejections.append(Rejection(0, self._minute, order.size / self.instrument.contract_size, reason))
        order.addinfo(reject_reason=reason)
        order.reject(self)
        self.notify(order)
        return order

    # ------------------------------------------------------------------ orders through the terminal
    def order_units(self, units: int, order: bt.Order | None = None, sl: float | None = None,
                    tp: float | None = None, reason: str = "strategy") -> int:
        """Send a market order for ``units`` (signed) now; returns the units executed. A Backtrader ``order`` is
        updated and notified; the guard's flatten has none."""
        acct, inst = self.acct, self.instrument
        if units == 0:
            return 0
        increases = abs(acct.units + units) > abs(acct.units)
        why = None
        if self._halt is not None:
            why = f"no new orders: {self._halt}"
        elif increases and acct.trading_state is not TradingState.ACTIVE:
            until = "for good" if acct.trading_state is TradingState.HALTED else \
                f"until {dt.datetime.fromtimestamp(acct.resume_at * 60, dt.UTC):%Y-%m-%d %H:%M} UTC"
            why = f"halted by the drawdown rules {until}: only reducing orders are accepted"
        elif (bad := inst.lots_ok(abs(units) / inst.contract_size)) is not None:
            why = bad
        if why is not None:
            if order is not None:
                self._reject(order, why)
            else:
                self.stats.rejected[why.split(":")[0]] += 1
            return 0  # refused before the terminal: the intended position is unchanged
        self.intended_units = acct.units + units
        self.stats.orders += 1
        executed = 0
        remaining = units
        for _ in range(self.max_retries):  # a partial fill leaves a remainder: a new request with a new id
            got = self._request(remaining, order, sl, tp, reason)
            executed += got
            remaining -= got
            if not got or not remaining:
                break
        if order is not None and not executed and order.status not in (bt.Order.Rejected, bt.Order.Canceled):
            order.cancel()  # not executed (and never resent blindly): the strategy's next target decides
            self.notify(order)
        return executed

    def _request(self, units: int, order: bt.Order | None, sl: float | None, tp: float | None, reason: str) -> int:
        """One order, one client id, its retries; returns the units executed (0 when refused or not executed)."""
        inst, acct = self.instrument, self.acct
        cid = self.journal.new_cid()
        self.journal.intend(cid, self.store.now(), self._minute, inst.symbol, units, acct.units + units)
        request: dict[str, Any] = {
            "action": TRADE_ACTION_DEAL, "symbol": inst.symbol, "volume": round(abs(units) / inst.contract_size, 8),
            "type": ORDER_TYPE_BUY if units > 0 else ORDER_TYPE_SELL, "deviation": self.deviation,
            "magic": self.magic, "comment": cid, "type_time": ORDER_TIME_GTC, "type_filling": self._filling[0],
        }
        if sl is not None:
            request["sl"] = float(sl)
        if tp is not None:
            request["tp"] = float(tp)
        fillings = list(self._filling)
        for attempt in range(self.max_retries + 1):
            tick = self.store.call("symbol_info_tick", inst.symbol)
            if tick is not None:
                request["price"] = float(tick.ask if units > 0 else tick.bid)
            self.stats.requests += 1
            result, err = self.store.send(request)
            name, action = policy(None if result is None else result.retcode)
            self.journal.event("answer", {"attempt": attempt, "retcode": name, "error": err}, cid)
            if action is Action.FILLED:
                if sl is not None or tp is not None:  # the strategy's levels for the resulting position
                    self._strategy_sl, self._strategy_tp = float(sl or 0.0), float(tp or 0.0)
                return self._filled(cid, units, result, order, reason)
            if action in (Action.UNKNOWN, Action.CHECK_DEALS):
                if action is Action.UNKNOWN:
                    self.stats.unknown_outcomes += 1
                self.journal.resolve(cid, "unknown", None if result is None else int(result.retcode), detail=name)
                return self._reconcile(cid, units, order, reason)
            if action is Action.RETRY_PRICE or action is Action.BACKOFF:
                self.stats.retries += 1
                if action is Action.BACKOFF:
                    self.store.sleep(min(30.0, 0.5 * 2 ** attempt))
                continue
            if action is Action.NEXT_FILLING and len(fillings) > 1:
                self.stats.retries += 1
                fillings.pop(0)
                request["type_filling"] = fillings[0]
                continue
            if action is Action.HALT:
                self._halt = f"{name} (retcode {result.retcode})"
                self._halt_bar = len(self._data) if self._data is not None else 0
                self.store.put_notification("HALT", reason=name)
                log.warning("%s: no new orders until the next bar", name)
            why = f"{name}: {getattr(result, 'comment', '')}".strip()
            self.journal.resolve(cid, "rejected", None if result is None else int(result.retcode), detail=why)
            if order is not None:
                self._reject(order, why)
            else:
                self.stats.rejected[name] += 1
            return 0
        self.journal.resolve(cid, "rejected", detail="retries exhausted")
        if order is not None:
            self._reject(order, "retries exhausted (requotes or back-off)")
        return 0

    def _filled(self, cid: str, units: int, result: Any, order: bt.Order | None, reason: str,
                sl: float | None = None, tp: float | None = None) -> int:
        deals = self._deals_for(cid, None, ticket=int(result.deal) if result.deal else None)
        executed = sum(self._signed_units(d) for d in deals)
        if not deals:  # DONE without a deal we can see yet: trust the answer's volume, record it
            executed = round(float(result.volume) * self.instrument.contract_size) * (1 if units > 0 else -1)
        status = "filled" if executed == units else "partial"
        self.journal.resolve(cid, status, int(result.retcode), executed, float(result.price),
                             tuple(int(d.ticket) for d in deals))
        for d in deals:
            self._take_deal(d, order, reason)
        self._refresh_position()
        return executed

    def _reconcile(self, cid: str, units: int, order: bt.Order | None, reason: str) -> int:
        """An outcome we did not hear: the terminal's deals say whether it executed; nothing is resent."""
        deals = self._deals_for(cid, None)
        executed = sum(self._signed_units(d) for d in deals)
        status = "filled" if executed == units else ("partial" if executed else "not_executed")
        self.journal.resolve(cid, status, executed_units=executed, price=float(deals[0].price) if deals else None,
                             deals=tuple(int(d.ticket) for d in deals), detail="reconciled after an unknown outcome")
        self.stats.reconciled += 1
        for d in deals:
            self._take_deal(d, order, reason)
        self._refresh_position()
        if not executed and order is not None:
            order.cancel()
            self.notify(order)
        return executed

    # ------------------------------------------------------------------ deals and fills
    def _deals_since(self, server_from: float) -> tuple:
        now = self.store.to_server(self.store.now()) + 60
        deals = self.store.call("history_deals_get", dt.datetime.fromtimestamp(server_from, dt.UTC),
                                dt.datetime.fromtimestamp(now, dt.UTC))
        return tuple(d for d in (deals or ()) if d.symbol == self.instrument.symbol and int(d.type) in (0, 1))

    def _deals_for(self, cid: str, since: float | None, ticket: int | None = None) -> list:
        if ticket is not None:
            got = self.store.call("history_deals_get", ticket=ticket) or ()
            if got:
                return [d for d in got if int(d.type) in (0, 1)]
        since_s = self.store.to_server(since) - 86400 if since else self._deal_cursor - 86400
        return [d for d in self._deals_since(since_s) if d.comment == cid and int(d.magic) == self.magic]

    def _signed_units(self, deal: Any) -> int:
        units = round(float(deal.volume) * self.instrument.contract_size)
        return units if int(deal.type) == DEAL_TYPE_BUY else -units

    def _take_deal(self, deal: Any, order: bt.Order | None, reason: str) -> None:
        """A terminal deal as our Fill; reported to Backtrader at the next bar (when a backtest reports fills)."""
        ticket = int(deal.ticket)
        if ticket in self._known_deals:
            return
        self._known_deals.add(ticket)
        inst, acct = self.instrument, self.acct
        units = self._signed_units(deal)
        old = self._fill_position
        closed = 0
        if old and (old > 0) != (units > 0):
            closed = -old if abs(units) >= abs(old) else units
        opened = units - closed
        self._fill_position = old + units
        price = float(deal.price)
        utc_s = self.store.to_utc(int(deal.time))
        minute = utc_s // 60
        spread = inst.spread_price((minute // 60) % 24)
        kind = {DEAL_REASON_SL: "stop_loss", DEAL_REASON_TP: "take_profit", DEAL_REASON_SO: "stop_out"}.get(
            int(deal.reason), "market")
        if kind == "stop_loss" and self._protective_sl and self._stop_was_protective:  # our floor, not the strategy's
            kind = "equity_stop"
            acct.equity_stop_fired = True
            acct.equity_stop_gap = not math.isclose(price, self._protective_sl, abs_tol=0.5 * 10.0 ** -inst.digits)
        if kind != "market":  # the terminal closed it (stop, target, stop-out): that is now the intended position
            self.intended_units = self._fill_position
        spread_cost = units * spread * (1.0 if inst.quote_is_account else 1.0 / price) if units > 0 else 0.0
        fill = Fill(ticket, minute, units / inst.contract_size, price, -float(deal.commission), spread_cost,
                    float(deal.profit), kind, opened / inst.contract_size, closed / inst.contract_size, units)
        self.fills.append(fill)
        self._pending_fills.append((order, fill))
        self.journal.event("fill", {"deal": ticket, "units": units, "price": price, "reason": kind,
                                    "by": reason}, getattr(deal, "comment", None))

    _fill_position = 0  # the position as our fills have built it (for opened/closed parts)
    _stop_was_protective = False  # the stop-loss in force is the drawdown floor's
    _strategy_sl = _strategy_tp = 0.0  # the levels the strategy asked for, for the current position

    # ------------------------------------------------------------------ each bar
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        out = self.store.call(name, *args, **kwargs)
        if out is None:
            raise RuntimeError(f"MetaTrader 5 answered {name} with an error")
        return out

    def _refresh(self) -> None:
        """Balance, equity and margin (as the terminal marks them at the last close) and the position."""
        acct = self.acct
        info = self._call("account_info")
        acct.balance, acct.equity, acct.margin = float(info.balance), float(info.equity), float(info.margin)
        self._refresh_position()

    def _refresh_position(self) -> None:
        """The position alone: after an order inside a bar, the money stays as at the bar's close until the next
        bar (as in a backtest, where the drawdown rules and the records see fills at the next bar)."""
        acct, inst = self.acct, self.instrument
        positions = self.store.call("positions_get", symbol=inst.symbol)
        if positions is None:
            raise RuntimeError("MetaTrader 5 answered positions_get with an error")
        mine = [p for p in positions if p.symbol == inst.symbol]
        if len(mine) > 1:
            raise RuntimeError(f"{len(mine)} {inst.symbol} positions: this broker needs a netting account")
        if mine:
            p = mine[0]
            units = round(float(p.volume) * inst.contract_size)
            acct.units = units if int(p.type) == POSITION_TYPE_BUY else -units
            acct.avg_price, acct.ticket = float(p.price_open), int(p.ticket)
            acct.sl, acct.tp = float(p.sl), float(p.tp)
        else:
            acct.units, acct.avg_price, acct.ticket, acct.sl, acct.tp = 0, 0.0, None, 0.0, 0.0
            self._strategy_sl = self._strategy_tp = 0.0
        acct.lots = acct.units / inst.contract_size

    def next(self) -> None:
        d = self._data
        if d is None:
            raise RuntimeError("MT5Broker.set_data(m1_feed) must be called before the run")
        n = len(d)
        if n == self._last_len:  # a cycle where only a higher-timeframe feed (or nothing) moved
            return
        self._last_len = n
        acct, inst = self.acct, self.instrument
        minute = round((d.datetime[0] - _EPOCH_NUM) * 1440.0)
        self._minute = minute
        if getattr(d, "delivering_history", lambda: False)():  # backfilled bars are history: features see them, the
            acct.bid = float(d.close[0])  # account does not trade on them (the agents' observations read the price)
            acct.spread = inst.spread_price((minute // 60) % 24)
            return
        if self._halt is not None and n > self._halt_bar:
            self._halt = None  # the market has a new bar: it is open again
        if acct.trading_state is TradingState.REDUCING and minute >= acct.resume_at:
            acct.trading_state = TradingState.ACTIVE
        guard = acct.guard
        guard.before_bar(acct, minute)  # with the account as at the last close, as the simulation core does
        acct.equity_stop_fired = acct.equity_stop_gap = False
        for deal in self._deals_since(self._deal_cursor):  # the terminal's own fills: stops, take-profits, stop-outs
            if int(deal.ticket) not in self._known_deals:
                self._take_deal(deal, None, "terminal")
        self._deal_cursor = max(self._deal_cursor, float(self.store.to_server(self.store.now())) - 120)
        self._refresh()
        for order, fill in self._pending_fills:  # what filled during this bar, reported now
            if fill is not None:
                execute_fill(self, order, fill, d, acct.margin)
        self._pending_fills.clear()
        acct.bid = float(d.close[0])
        acct.spread = inst.spread_price((minute // 60) % 24)
        if acct.units:
            worst = float(d.low[0]) if acct.units > 0 else float(d.high[0]) + acct.spread
            conv = 1.0 if inst.quote_is_account else 1.0 / worst
            acct.worst_equity = acct.balance + acct.units * (worst - acct.avg_price) * conv
        else:
            acct.worst_equity = acct.balance
        guard.after_bar(acct, minute)
        if self.protective_stop:
            self._protect()
        self._persist()

    def _protect(self) -> None:
        """Keep the terminal's stop-loss at the price where equity after the closing commission meets the floor the
        next bar will have (``DrawdownGuard.floor_at``), or at the strategy's own stop where that is tighter."""
        acct, inst = self.acct, self.instrument
        if not acct.units or acct.ticket is None:
            self._protective_sl = 0.0
            return
        nxt = int(self.store.now() // 60)
        floor = acct.guard.floor_at(max(nxt, self._minute + 1), acct.balance, acct.equity)
        px = floor_price(acct.units, acct.avg_price, acct.balance, floor, inst)
        point = 10.0 ** -inst.digits
        px = math.ceil(px / point) * point if acct.units > 0 else math.floor(px / point) * point
        current = acct.sl
        own = self._strategy_sl
        sl = px if not own else (max(px, own) if acct.units > 0 else min(px, own))
        self._stop_was_protective = not own or sl == px
        wrong_side = (acct.units > 0 and sl >= acct.bid) or (acct.units < 0 and sl <= acct.bid + acct.spread)
        if wrong_side or abs(sl - current) < 0.5 * point:
            self._protective_sl = px
            return
        request = {"action": TRADE_ACTION_SLTP, "symbol": inst.symbol, "position": acct.ticket, "sl": round(sl,
                   inst.digits), "tp": acct.tp, "magic": self.magic}
        result, _ = self.store.send(request)
        if result is not None and policy(result.retcode)[1] is Action.FILLED:
            self.stats.protective_updates += 1
            self._protective_sl = px
            acct.sl = sl

    def _persist(self) -> None:
        acct = self.acct
        self.journal.put("guard", acct.guard.state_dict())
        self.journal.put("trading_state", [int(acct.trading_state), int(acct.resume_at)])

    # ------------------------------------------------------------------ the run's report
    def live_summary(self) -> dict[str, Any]:
        """Counters for ``summary.json``: orders, retries, reconciled and unknown outcomes, duplicates and lost
        orders (checked against the terminal's deals), reconnects, rejections by reason."""
        intents = self.journal.intents()
        since = self.store.to_server(min((i.created for i in intents), default=self.store.now())) - 86400
        mine = [d for d in self._deals_since(since) if int(d.magic) == self.magic]
        by_cid: dict[str, int] = collections.Counter()
        for d in mine:
            by_cid[d.comment] += abs(self._signed_units(d))
        known = {i.cid: i for i in intents}
        duplicates = sum(1 for cid, u in by_cid.items() if cid in known and u > abs(known[cid].units))
        lost = sum(1 for i in intents if i.status in ("sent", "unknown")) + \
            sum(1 for cid in by_cid if cid not in known and cid.startswith("mtf-"))
        return {"backend": self.store.config.backend, "orders": self.stats.orders, "requests": self.stats.requests,
                "retries": self.stats.retries, "reconciled": self.stats.reconciled,
                "unknown_outcomes": self.stats.unknown_outcomes, "duplicates": duplicates, "lost": lost,
                "reconnects": self.store.reconnects, "ipc_errors": self.store.ipc_errors,
                "protective_updates": self.stats.protective_updates, "rejected": dict(self.stats.rejected),
                "final_units": self.acct.units, "intended_units": self.intended_units}
