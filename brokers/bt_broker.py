"""Backtrader face of the forex simulation: strategies trade through ``brokers.sim.ForexSim``.

Sizes are whole units of the base currency (lots x contract size: 100,000 per FX lot, 100 oz per gold
lot), as Backtrader's ``Position.size``; the core keeps them as integers, so a position that returns to flat is
exactly 0 and Backtrader closes the trade. Only market orders exist in the core; a stop-loss or take-profit
rides on an order as keyword arguments (``self.buy(size=..., sl=1.05, tp=1.10)``). Fills the broker makes
on its own (stop-loss, take-profit, stop-out) reach the strategy as ordinary completed orders, like
Backtrader's own Oanda broker does with outside fills. Orders are rejected with a reason in
``order.info.reject_reason``, never resized.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

import backtrader as bt

from brokers.account import AccountView
from brokers.instruments import Instrument, get_instrument
from brokers.sim import Fill, ForexSim, Rejection

if TYPE_CHECKING:
    from risk.drawdown import DrawdownGuard, DrawdownRules

log = logging.getLogger(__name__)

_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))


class ForexCommInfo(bt.CommInfoBase):
    """Trade P&L in USD, converting quote-currency P&L at the exit rate (USDJPY) as the core does."""

    params = (("stocklike", False), ("commtype", bt.CommInfoBase.COMM_FIXED), ("percabs", True))

    def __init__(self, instrument: Instrument) -> None:
        super().__init__()
        self.instrument = instrument

    def profitandloss(self, size: float, price: float, newprice: float) -> float:
        return self.instrument.to_account(size * (newprice - price), newprice)

    def getvaluesize(self, size: float, price: float) -> float:
        return self.instrument.to_account(abs(size) * price, price)

    def getoperationcost(self, size: float, price: float) -> float:
        return self.getvaluesize(size, price)

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) / self.instrument.contract_size * self.instrument.commission_per_lot


class BrokerFace(bt.BrokerBase):
    """What our two Backtrader brokers (the simulation's and MetaTrader 5's) share: Backtrader's order entry points,
    the notification queue, positions and the commission info; a subclass defines ``_submit`` and the account."""

    comminfo_fx: ForexCommInfo

    def __init__(self) -> None:
        super().__init__()
        self.notifs: collections.deque = collections.deque()
        self.positions: dict = collections.defaultdict(bt.Position)
        self._owner = None

    def getposition(self, data) -> bt.Position:
        return self.positions[data]

    def getcommissioninfo(self, data) -> bt.CommInfoBase:
        return self.comminfo_fx

    def get_notification(self):
        return self.notifs.popleft() if self.notifs else None

    def notify(self, order: bt.Order) -> None:
        self.notifs.append(order.clone())

    def orderstatus(self, order: bt.Order) -> int:
        return order.status

    def buy(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0,
            oco=None, trailamount=None, trailpercent=None, parent=None, transmit=True, histnotify=False,
            _checksubmit=True, **kwargs) -> bt.Order:
        return self._submit(bt.BuyOrder, owner, data, size, exectype, tradeid, kwargs)

    def sell(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None, tradeid=0,
             oco=None, trailamount=None, trailpercent=None, parent=None, transmit=True, histnotify=False,
             _checksubmit=True, **kwargs) -> bt.Order:
        return self._submit(bt.SellOrder, owner, data, size, exectype, tradeid, kwargs)

    def _submit(self, cls, owner, data, size, exectype, tradeid, info) -> bt.Order:
        raise NotImplementedError


class ForexBroker(BrokerFace):
    """``bt.BrokerBase`` over one ``ForexSim``; it trades the M1 feed given to ``set_data``.

    :param sim: the simulation core (one instrument, one account)
    :param on_bar: called with the number of M1 bars processed so far (progress bars)
    :param guard: drawdown rules to enforce inside the core (installed as ``sim.guard``); None: the core's own
    """

    def __init__(self, sim: ForexSim, on_bar: Callable[[int], None] | None = None,
                 guard: DrawdownGuard | None = None) -> None:
        super().__init__()
        self.sim = sim
        if guard is not None:
            if sim.guard is not None and sim.guard is not guard:
                raise ValueError("the simulation already has another drawdown guard")
            sim.guard = guard
        self.startingcash = sim.initial_cash  # Backtrader's writer reads it
        self.on_bar = on_bar
        self.equity = array("d")  # per M1 bar, at the close
        self.worst_equity = array("d")  # per M1 bar, at the position's worst price
        self.comminfo_fx = ForexCommInfo(sim.instrument)
        self._orders: dict[int, bt.Order] = {}
        self._data: bt.AbstractDataBase | None = None
        self._last_len = 0
        self._seen_rejections = 0
        self.fills: list[Fill] = []

    @property
    def account(self) -> AccountView:
        """The account strategies and analyzers read (the simulation core itself)."""
        return self.sim

    def set_data(self, data) -> None:
        """The M1 feed whose bars drive the simulation (orders on other feeds are rejected)."""
        self._data = data

    # ------------------------------------------------------------ accounting
    def getcash(self) -> float:
        return self.sim.balance

    def getvalue(self, datas=None) -> float:
        return self.sim.equity

    # ---------------------------------------------------------------- orders

    def _submit(self, cls, owner, data, size, exectype, tradeid, info) -> bt.Order:
        self._owner = owner
        order = cls(owner=owner, data=data, size=size, exectype=exectype, tradeid=tradeid)
        order.addinfo(**info)
        order.addcomminfo(self.comminfo_fx)
        if data is not self._data:
            return self._reject(order, "this broker trades only its M1 feed (set_data)")
        if exectype not in (None, bt.Order.Market):
            return self._reject(order, "only market orders are supported; pass sl=/tp= for stops")
        lots = order.size / self.sim.instrument.contract_size
        res = self.sim.submit(lots, sl=info.get("sl"), tp=info.get("tp"))
        if isinstance(res, Rejection):
            return self._reject(order, res.reason)
        self._seen_rejections = len(self.sim.rejections)
        order.submit(self)
        self.notify(order)
        order.accept(self)
        self.notify(order)
        self._orders[res] = order
        return order

    def _reject(self, order: bt.Order, reason: str) -> bt.Order:
        self._seen_rejections = len(self.sim.rejections)
        log.warning("order rejected: %s", reason)
        order.addinfo(reject_reason=reason)
        order.reject(self)
        self.notify(order)
        return order

    def cancel(self, order: bt.Order, bracket: bool = False):
        for oid, o in list(self._orders.items()):
            if o is order and self.sim.cancel(oid):
                del self._orders[oid]
                order.cancel()
                self.notify(order)
                return order
        return None


    # ------------------------------------------------------------- each bar
    def next(self) -> None:
        d = self._data
        if d is None:
            raise RuntimeError("ForexBroker.set_data(m1_feed) must be called before the run")
        n = len(d)
        if n == self._last_len:  # a cycle where only a higher-timeframe feed moved
            return
        self._last_len = n
        minute = round((d.datetime[0] - _EPOCH_NUM) * 1440.0)
        fills = self.sim.on_bar(minute, d.open[0], d.high[0], d.low[0], d.close[0])
        for fill in fills:
            self._apply_fill(fill, d)
        self.equity.append(self.sim.equity)
        self.worst_equity.append(self.sim.worst_equity)
        if self.on_bar is not None:
            self.on_bar(n)
        rej = self.sim.rejections
        while self._seen_rejections < len(rej):  # refused at fill time (margin moved against us)
            r = rej[self._seen_rejections]
            self._seen_rejections += 1
            order = self._orders.pop(r.order_id, None)
            if order is not None:
                log.warning("order rejected at fill: %s", r.reason)
                order.addinfo(reject_reason=r.reason)
                order.margin()
                self.notify(order)

    def _apply_fill(self, fill: Fill, data) -> None:
        self.fills.append(fill)
        execute_fill(self, self._orders.pop(fill.order_id, None), fill, data, self.sim.margin_used)


def execute_fill(broker: bt.BrokerBase, order: bt.Order | None, fill: Fill, data, margin: float) -> bt.Order:
    """Report ``fill`` to Backtrader as an execution of ``order`` (None: a fill the broker made on its own, a
    stop-loss, take-profit, stop-out or equity stop, reported as a completed market order of its own, as
    Backtrader's Oanda broker does with outside fills): the position, the order's executed parts, the notification.
    Shared by the simulated and the live broker, so both report a fill the same way."""
    units = fill.units
    if order is None:
        cls = bt.BuyOrder if units > 0 else bt.SellOrder
        order = cls(owner=broker._owner, data=data, size=abs(units), exectype=bt.Order.Market)
        order.addinfo(reason=fill.reason)
        order.addcomminfo(broker.comminfo_fx)
        order.submit(broker)
        order.accept(broker)
    pos = broker.positions[data]
    pprice_orig = pos.price
    psize, pprice, opened, closed = pos.update(units, fill.price, data.datetime.datetime())
    ci = broker.comminfo_fx
    per_unit = fill.commission / abs(units)
    order.execute(
        data.datetime[0], units, fill.price,
        closed, ci.getoperationcost(closed, pprice_orig) if closed else 0.0, abs(closed) * per_unit,
        opened, ci.getoperationcost(opened, fill.price), abs(opened) * per_unit,
        margin, fill.realised_pnl, psize, pprice,
    )
    if order.owner is not None:  # a terminal's stop before the strategy sent anything has no one to tell
        broker.notify(order)
    return order


def use_forex_broker(cerebro: bt.Cerebro, m1_feed, symbol: str, cash: float = 100_000.0, leverage: float = 30.0,
                     rules: DrawdownRules | None = None) -> ForexBroker:
    """Make our forex broker (costs, margin, stop-out, the drawdown rules enforced inside it) the broker of a user's
    own Cerebro, trading ``m1_feed``; returns it. Rules default to ``configs/drawdown.yaml`` (prop, 5 % / 10 %)."""
    from risk.drawdown import DrawdownGuard, DrawdownRules

    sim = ForexSim(get_instrument(symbol), cash=cash, leverage=leverage)
    broker = ForexBroker(sim, guard=DrawdownGuard(rules or DrawdownRules.from_config(), cash))
    broker.set_data(m1_feed)
    cerebro.setbroker(broker)
    return broker
