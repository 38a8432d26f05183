"""ForexBroker through Backtrader: fills, trades, rejections, broker-initiated stops, real-data reconciliation."""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.bt_broker import ForexBroker
from brokers.instruments import get_instrument
from brokers.sim import ForexSim
from feeds.btfeeds import m1_feed
from feeds.loaders import load_bars
from strategies.backtest import BacktestConfig, run_backtest

approx = pytest.approx


def bars(rows: list[tuple[float, float, float, float]], start: str = "2024-07-08 10:00") -> pd.DataFrame:
    idx = pd.date_range(start, periods=len(rows), freq="1min", tz="UTC", name="datetime")
    df = pd.DataFrame(rows, index=idx, columns=["open", "high", "low", "close"])
    df["volume"] = 0.0
    return df


class Scripted(bt.Strategy):
    """Places ``script[i]`` = (method, kwargs) on M1 bar ``i`` and records what the broker reports."""

    params = (("script", None),)

    def __init__(self) -> None:
        self.orders: list[tuple[int, bt.Order]] = []
        self.trades: list[bt.Trade] = []
        self.marks: list[tuple[float, float, float, float]] = []  # value, cash, size, price per bar
        self.placed: list[bt.Order] = []

    def notify_order(self, order: bt.Order) -> None:
        self.orders.append((len(self) - 1, order))  # index of the M1 bar

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.trades.append(trade)

    def next(self) -> None:
        pos = self.getposition(self.data0)
        self.marks.append((self.broker.getvalue(), self.broker.getcash(), pos.size, pos.price))
        step = (self.p.script or {}).get(len(self) - 1)
        if step is not None:
            method, kwargs = step
            self.placed.append(getattr(self, method)(data=self.data0, **kwargs))


def run_scripted(symbol: str, df: pd.DataFrame, script: dict, cash: float = 100_000.0):
    sim = ForexSim(get_instrument(symbol), cash=cash)
    broker = ForexBroker(sim)
    cerebro = bt.Cerebro(stdstats=False)
    feed = m1_feed(df, name=f"{symbol}_M1")
    cerebro.adddata(feed)
    broker.set_data(feed)
    cerebro.setbroker(broker)
    cerebro.addstrategy(Scripted, script=script)
    strat = cerebro.run()[0]
    return strat, broker, sim


def completed(strat: Scripted) -> list[tuple[int, bt.Order]]:
    return [(i, o) for i, o in strat.orders if o.status == bt.Order.Completed]


@pytest.mark.parametrize(
    ("symbol", "prices", "expected_pnl"),
    [
        ("EURUSD", (1.08000, 1.08100, 1.08200), 100_000 * (1.08200 - 1.08103)),
        ("USDJPY", (110.000, 110.000, 111.000), 100_000 * (111.000 - 110.004) / 111.000),
    ],
)
def test_round_trip_through_backtrader(symbol, prices, expected_pnl):
    p0, p1, p2 = prices
    df = bars([(p0, p0, p0, p0), (p1, p1, p1, p1), (p1, p1, p1, p1), (p2, p2, p2, p2), (p2, p2, p2, p2)])
    strat, broker, sim = run_scripted(symbol, df, {0: ("buy", {"size": 100_000}), 2: ("sell", {"size": 100_000})})

    done = completed(strat)
    assert [bar for bar, _ in done] == [1, 3]  # filled at the next bar's open, notified before its next()
    buy, sell = done[0][1], done[1][1]
    assert buy.isbuy() and sell.issell()
    assert buy.executed.price == broker.fills[0].price == approx(p1 + sim.instrument.spread_price(10), rel=1e-12)
    assert sell.executed.price == broker.fills[1].price == p2
    assert buy.executed.comm == approx(3.5) and sell.executed.comm == approx(3.5)
    statuses = [o.status for _, o in strat.orders]
    assert statuses.count(bt.Order.Submitted) == 2 and statuses.count(bt.Order.Accepted) == 2

    (trade,) = strat.trades
    assert trade.pnl == approx(sim.realised_pnl, rel=1e-12) == approx(expected_pnl, rel=1e-12)
    assert trade.pnlcomm == approx(expected_pnl - 7.0, rel=1e-12)
    assert trade.commission == approx(7.0)

    # while long 1 lot (bar 2): size in units, value = cash + P&L at the bid
    value, cash, size, pprice = strat.marks[2]
    assert size == 100_000 and pprice == approx(broker.fills[0].price, rel=1e-12)
    inst = sim.instrument
    assert value == approx(cash + inst.to_account(size * (p1 - pprice), p1), rel=1e-12)
    assert strat.marks[-1][:3] == (approx(sim.equity, rel=1e-12), approx(sim.balance, rel=1e-12), 0)
    assert broker.getvalue() == sim.equity == approx(100_000 + expected_pnl - 7.0, rel=1e-12)
    assert list(broker.equity) == [approx(v, rel=1e-12) for v, *_ in strat.marks]


def test_off_step_order_is_rejected_with_reason():
    df = bars([(1.1, 1.1, 1.1, 1.1)] * 3)
    strat, broker, sim = run_scripted("EURUSD", df, {0: ("buy", {"size": 1_500})})  # 0.015 lots
    (order,) = strat.placed
    assert order.status == bt.Order.Rejected
    assert "lot step" in order.info.reject_reason
    assert [o.status for _, o in strat.orders] == [bt.Order.Rejected]
    assert sim.lots == 0.0 and broker.fills == [] and broker.getvalue() == 100_000


def test_margin_and_non_market_orders_are_rejected():
    df = bars([(1.1, 1.1, 1.1, 1.1)] * 3)
    strat, _, sim = run_scripted(
        "EURUSD",
        df,
        {0: ("buy", {"size": 4_000_000}), 1: ("sell", {"size": 100_000, "exectype": bt.Order.Limit, "price": 1.2})},
    )
    big, limit = strat.placed
    assert big.status == limit.status == bt.Order.Rejected
    assert "margin" in big.info.reject_reason and "market" in limit.info.reject_reason
    assert sim.lots == 0.0


def test_stop_loss_arrives_as_broker_initiated_sell():
    df = bars(
        [
            (1.10000, 1.10000, 1.10000, 1.10000),
            (1.10000, 1.10010, 1.09990, 1.10000),  # buy fills at 1.10003
            (1.10000, 1.10010, 1.09850, 1.09900),  # low 1.0985 < sl 1.0990: stopped at 1.0990
            (1.09900, 1.09900, 1.09900, 1.09900),
        ]
    )
    strat, broker, sim = run_scripted("EURUSD", df, {0: ("buy", {"size": 100_000, "sl": 1.09900})})
    done = completed(strat)
    assert len(done) == 2
    (bar_b, buy), (bar_s, stop) = done
    assert bar_b == 1 and bar_s == 2
    assert stop.issell() and stop.executed.size == -100_000 and stop.executed.price == 1.09900
    assert stop.info.reason == "stop_loss"
    (trade,) = strat.trades
    assert trade.pnl == approx(100_000 * (1.09900 - 1.10003), rel=1e-12) == approx(sim.realised_pnl, rel=1e-12)
    assert strat.getposition(strat.data0).size == 0 and sim.lots == 0.0
    assert broker.getvalue() == approx(100_000 - 103.0 - 7.0, rel=1e-12)


def test_margin_refused_at_fill_arrives_as_margin_status():
    df = bars([(1.1, 1.1, 1.1, 1.1), (1.3, 1.3, 1.3, 1.3), (1.3, 1.3, 1.3, 1.3)])  # 2,000-pip gap
    strat, broker, sim = run_scripted("EURUSD", df, {0: ("buy", {"size": 100_000})}, cash=4_000.0)
    (order,) = strat.placed
    assert [o.status for _, o in strat.orders] == [bt.Order.Submitted, bt.Order.Accepted, bt.Order.Margin]
    assert "margin at fill" in strat.orders[-1][1].info.reject_reason
    assert sim.lots == 0.0 and broker.fills == [] and broker.getvalue() == 4_000.0


def test_short_take_profit_and_stop_out_reach_the_strategy():
    df = bars(
        [
            (1.10000, 1.10000, 1.10000, 1.10000),
            (1.10000, 1.10000, 1.10000, 1.10000),  # short 1 lot at the bid 1.1
            (1.10000, 1.10000, 1.09800, 1.09850),  # ask low 1.09803 <= tp 1.0990: bought back at 1.0990
            (1.09850, 1.09850, 1.09850, 1.09850),  # long 1 lot at 1.09853 on 4,000 USD
            (1.09850, 1.09850, 1.05000, 1.05000),  # collapse: stop-out at the low
            (1.05000, 1.05000, 1.05000, 1.05000),
        ]
    )
    script = {0: ("sell", {"size": 100_000, "tp": 1.09900}), 2: ("buy", {"size": 100_000})}
    strat, broker, sim = run_scripted("EURUSD", df, script, cash=4_000.0)
    reasons = [(bar, o.ordtypename(), o.info.get("reason")) for bar, o in completed(strat)]
    assert reasons == [(1, "Sell", None), (2, "Buy", "take_profit"), (3, "Buy", None), (4, "Sell", "stop_out")]
    tp, out = strat.trades
    assert tp.pnl == approx(100_000 * (1.10000 - 1.09900), rel=1e-12)
    assert out.pnl == approx(100_000 * (1.05000 - 1.09853), rel=1e-12)
    assert sim.stop_outs == 1 and strat.getposition(strat.data0).size == 0
    assert broker.getvalue() == approx(sim.balance, rel=1e-12) == approx(4_000 + tp.pnlcomm + out.pnlcomm, rel=1e-12)


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    ("symbol", "max_trade_usd"),
    [("USDJPY", 5_000.0), ("XAUUSD", 10_000.0)],  # 1 lot: 100k USD of yen; 100 oz of gold
)
def test_sma_cross_reconciles_on_real_data(fx_dir, symbol, max_trade_usd):
    m1 = load_bars(fx_dir, symbol=symbol, start="2017-03-06", end="2017-03-10")
    cfg = BacktestConfig(symbol=symbol, strategy_params={"fast": 6, "slow": 24, "h4_period": 6})
    res = run_backtest("sma_cross", m1, cfg)
    sim = res.strategy_obj.broker.sim
    assert res.bars == len(m1) and len(res.trades) >= 2
    assert res.equity[-1] == sim.equity

    # open trade (if any) as Backtrader tracks it
    open_trades = [
        t
        for per_id in res.strategy_obj._trades.values()
        for ts in per_id.values()
        for t in ts
        if not t.isclosed and t.size
    ]
    assert len(open_trades) == (1 if sim.lots else 0)
    closed_net = sum(t["pnl_net"] for t in res.trades)
    closed_gross = sum(t["pnl"] for t in res.trades)
    open_net = sum(t.pnlcomm for t in open_trades)
    open_gross = sum(t.pnl for t in open_trades)
    unrealised = sim.equity - sim.balance
    assert closed_gross + open_gross == approx(sim.realised_pnl, rel=1e-9, abs=1e-6)
    assert closed_net + open_net + unrealised - res.costs["swap"] == approx(
        res.equity[-1] - cfg.cash, rel=1e-9, abs=1e-6
    )
    assert sum(t["commission"] for t in res.trades) + sum(t.commission for t in open_trades) == approx(
        res.costs["commission"], rel=1e-9
    )

    for t in res.trades:
        assert abs(t["size"]) == sim.instrument.contract_size  # 1 lot in units
        assert abs(t["pnl"]) < max_trade_usd
        assert t["commission"] == approx(7.0)
    # a few days cost something but not absurd amounts
    assert 0 < res.costs["spread"] < 100 * len(res.fills) + 1
    assert res.costs["swap"] != 0.0 and abs(res.costs["swap"]) < 100  # positions were held overnight


# --------------------------------------------------------------------------- trades that add up


class TradeCounter(bt.Strategy):
    """Orders ``deltas[i]`` lots on bar ``i``, closes what is left on the bar after, and keeps every trade
    Backtrader closes."""

    params = (("deltas", ()),)

    def __init__(self) -> None:
        self.closed: list[bt.Trade] = []

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.closed.append(trade)

    def next(self) -> None:
        i = len(self) - 1
        if i < len(self.p.deltas) and self.p.deltas[i]:
            units = round(self.p.deltas[i] * 100_000)
            (self.buy if units > 0 else self.sell)(data=self.data0, size=abs(units))
        elif i == len(self.p.deltas):
            self.close(data=self.data0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deltas=st.lists(st.one_of(st.sampled_from([-4.44, 3.90, 0.54, -0.54, 0.01, -0.01]),
                                 st.integers(-300, 300).map(lambda k: k / 100)), min_size=1, max_size=25),
       moves=st.lists(st.integers(-30, 30), min_size=26, max_size=26))
def test_trades_close_whenever_the_fills_return_to_flat(deltas, moves):
    """Backtrader's trade count equals the returns to flat (and flips through it) in the fills, and the trades'
    P&L adds up to the core's realised P&L."""
    prices = [round(1.1 + 0.0001 * sum(moves[:k + 1]), 5) for k in range(len(deltas) + 2)]
    df = bars([(p, p, p, p) for p in prices])
    sim = ForexSim(get_instrument("EURUSD"), cash=1e7)
    broker = ForexBroker(sim)
    cerebro = bt.Cerebro(stdstats=False)
    feed = m1_feed(df, name="EURUSD_M1")
    cerebro.adddata(feed)
    broker.set_data(feed)
    cerebro.setbroker(broker)
    cerebro.addstrategy(TradeCounter, deltas=deltas)
    strat = cerebro.run()[0]

    position, crossings = 0, 0
    for f in broker.fills:
        new = position + f.units
        crossings += position != 0 and (new == 0 or (new > 0) != (position > 0))
        position = new
    assert position == sim.units == broker.getposition(feed).size == 0
    assert len(strat.closed) == crossings
    assert sum(t.pnl for t in strat.closed) == approx(sim.realised_pnl, rel=1e-9, abs=1e-6)
    assert sum(t.pnlcomm for t in strat.closed) == approx(sim.realised_pnl - sim.costs_commission, rel=1e-9, abs=1e-6)
