"""The MT5 terminal simulator: the real module's names and values, the clock, backtest-equal fills, faults,
credentials, and the real mt5linux client end to end (localhost only)."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brokers.instruments import get_instrument
from brokers.sim import ForexSim
from feeds.loaders import load_bars
from stores.mt5_sim import (
    API_FUNCTIONS,
    MAX_BARS,
    RATES_DTYPE,
    RESULT_TYPES,
    SIM_FUNCTIONS,
    FaultSpec,
    TerminalSimulator,
    TradeRequest,
    module_surface,
    mt5_constants,
)
from stores.mt5_sim_server import SimServer, is_loopback, serve

SYM = "EURUSD"
INST = get_instrument(SYM)
C = TerminalSimulator  # the constants live on the simulator, like on the module
LOGIN, PASSWORD, SERVER = 10_000_001, "s3cr3t-Pa55!", "MTF-Simulator"
REPO_ROOT = Path(__file__).resolve().parent.parent
UTC = dt.UTC


def _site_file(*parts: str) -> Path:
    import rpyc  # noqa: F401  (the live extra: mt5linux's transport)

    mt5linux = pytest.importorskip("mt5linux")
    path = Path(mt5linux.__file__).resolve().parent.parent.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    return path


def make(bars: pd.DataFrame, start: str, **kw) -> TerminalSimulator:
    """A simulator that is already connected with the right credentials."""
    kw.setdefault("password", PASSWORD)
    sim = TerminalSimulator(bars=bars, symbol=SYM, start=start, **kw)
    assert sim.initialize(login=LOGIN, password=PASSWORD, server=SERVER), sim.last_error()
    return sim


def synthetic(rows: list[tuple[str, float, float, float, float]]) -> pd.DataFrame:
    """Bid bars with an exact price path: (UTC open, o, h, l, c)."""
    idx = pd.DatetimeIndex([pd.Timestamp(r[0], tz="UTC") for r in rows], name="datetime")
    df = pd.DataFrame([r[1:] for r in rows], index=idx, columns=["open", "high", "low", "close"])
    df["volume"] = 0.0
    df.attrs = {"symbol": SYM}
    return df


def deal_req(volume: float, buy: bool, **kw) -> dict:
    return {"action": C.TRADE_ACTION_DEAL, "symbol": SYM, "volume": volume,
            "type": C.ORDER_TYPE_BUY if buy else C.ORDER_TYPE_SELL, "type_filling": C.ORDER_FILLING_IOC, **kw}


def srv_s(ts: str, hours: int) -> int:
    """Server-clock seconds of a UTC time on a server ``hours`` ahead of UTC."""
    return int(pd.Timestamp(ts, tz="UTC").timestamp()) + 3600 * hours


@pytest.fixture(scope="module")
def week(fx_dir: Path) -> pd.DataFrame:
    """Real EURUSD bars, Monday 2024-07-01 to Tuesday 2024-07-09 (one weekend; EEST = UTC+3 all along)."""
    return load_bars(fx_dir, symbol=SYM, start="2024-07-01", end="2024-07-09")


# ============================================================================================ 1. conformance


def _value(node: ast.expr) -> int:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _value(node.left) | _value(node.right)
    raise ValueError(f"unexpected constant expression {ast.dump(node)}")


def _parse_stubs() -> tuple[dict[str, ast.FunctionDef], dict[str, list[str]], dict[str, int]]:
    tree = ast.parse(_site_file("MetaTrader5-stubs", "__init__.pyi").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: [s.target.id for s in n.body if isinstance(s, ast.AnnAssign)]
               for n in tree.body if isinstance(n, ast.ClassDef)}
    consts = {n.target.id: _value(n.value) for n in tree.body
              if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id.isupper()}
    return funcs, classes, consts


def _mt5linux_constants() -> dict[str, int]:
    tree = ast.parse(_site_file("mt5linux", "constants.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    return {s.targets[0].id: _value(s.value) for s in cls.body if isinstance(s, ast.Assign)}


def test_functions_and_results_match_the_stubs() -> None:
    funcs, classes, _ = _parse_stubs()
    assert set(funcs) <= set(API_FUNCTIONS), "every stub function is implemented"
    for name, node in funcs.items():
        ours = inspect.signature(getattr(TerminalSimulator, name)).parameters
        stub = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
        assert set(stub) <= set(ours), f"{name}: stub parameters {stub}, ours {list(ours)}"
    ours_by_name = {t.__name__: t for t in RESULT_TYPES}
    for name, stub_fields in classes.items():
        assert name in ours_by_name, f"result type {name} is missing"
        assert list(ours_by_name[name]._fields) == stub_fields, name  # TradeRequest: the TypedDict's keys
    surface = module_surface(make(synthetic([("2024-07-08 10:00", 1.1, 1.1, 1.1, 1.1)]), "2024-07-08 10:00"))
    assert {*API_FUNCTIONS, *SIM_FUNCTIONS, *ours_by_name} <= set(surface)


def test_constants_have_the_real_values() -> None:
    _, _, stub = _parse_stubs()
    linux = _mt5linux_constants()
    ours = mt5_constants()
    assert set(stub) <= set(ours), "every constant of the stubs is defined"
    for name, value in ours.items():
        for source, table in (("stubs", stub), ("mt5linux", linux)):
            if name in table:
                assert value == table[name], f"{name} = {value}, {source} say {table[name]}"
    docs_only = {n for n in ours if n not in stub and n not in linux}
    assert docs_only == {"SYMBOL_FILLING_FOK", "SYMBOL_FILLING_IOC", "SYMBOL_FILLING_BOC"}  # MQL5 reference
    assert (ours["SYMBOL_FILLING_FOK"], ours["SYMBOL_FILLING_IOC"]) == (1, 2)
    assert (C.RES_E_INTERNAL_FAIL_INIT, C.RES_E_INTERNAL_FAIL_CONNECT, C.RES_E_INTERNAL_FAIL_TIMEOUT) == (
        -10003, -10004, -10005)


def _doc_listing(doc: str, marker: str) -> list[str]:
    """Field names of an ``_asdict()`` listing in the official docs' example output."""
    names: list[str] = []
    for line in doc[doc.rindex(marker) + len(marker):].splitlines():
        m = re.match(r"^\s*(?:traderequest: )?(\w+)=", line)
        if m:
            names.append(m.group(1))
        elif names and line.strip():
            break
    return names


def test_results_not_in_the_stubs_match_the_official_docs() -> None:
    """AccountInfo, SymbolInfo, TradeDeal, OrderCheckResult come from the docs, as mt5linux's docstrings carry them."""
    tree = ast.parse(_site_file("mt5linux", "metatrader5.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    docs = {f.name: ast.get_docstring(f) or "" for f in cls.body if isinstance(f, ast.FunctionDef)}
    from stores.mt5_sim import AccountInfo, OrderCheckResult, SymbolInfo, TradeDeal

    assert list(AccountInfo._fields) == _doc_listing(docs["account_info"], "Show account_info()._asdict():")
    assert list(SymbolInfo._fields) == _doc_listing(docs["symbol_info"], "Show symbol_info()._asdict():")
    header = next(line for line in docs["history_deals_get"].splitlines() if re.match(r"^\s+ticket\s+order\s", line))
    assert list(TradeDeal._fields) == header.split()
    check = docs["order_check"]
    result_part = check[check.rindex("Account сurrency:"):]
    names = [re.match(r"^\s+(\w+)=", ln).group(1) for ln in result_part.splitlines() if re.match(r"^\s+\w+=", ln)]
    assert list(OrderCheckResult._fields) == names
    assert list(TradeRequest._fields) == re.findall(r"traderequest: (\w+)=", result_part)


# ================================================================================================= 2. clock


def test_the_start_bar_forms_and_history_is_exact(week: pd.DataFrame) -> None:
    sim = make(week, "2024-07-03 10:00")
    i = week.index.get_loc(pd.Timestamp("2024-07-03 10:00", tz="UTC"))
    forming = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 0, 1)
    last = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)
    assert forming.dtype == RATES_DTYPE and len(forming) == len(last) == 1
    o = week["open"].iloc[i]
    assert forming[0]["time"] == srv_s("2024-07-03 10:00", 3)  # EEST: UTC+3
    assert tuple(forming[0])[1:6] == (o, o, o, o, 1)  # partial: its open everywhere, one tick
    assert (week["high"].iloc[i], week["low"].iloc[i]) != (o, o), "the test needs a bar that is not flat"
    prev = week.iloc[i - 1]
    assert last[0]["time"] == srv_s("2024-07-03 09:59", 3)
    assert tuple(last[0])[1:5] == (prev["open"], prev["high"], prev["low"], prev["close"])
    both = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 0, 2)
    assert list(both["time"]) == [last[0]["time"], forming[0]["time"]]  # oldest first, like MT5
    assert sim.sim_time() == pd.Timestamp("2024-07-03 10:00", tz="UTC").timestamp()

    assert sim.sim_advance()
    closed = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]
    bar = week.iloc[i]
    assert tuple(closed)[:5] == (srv_s("2024-07-03 10:00", 3), bar["open"], bar["high"], bar["low"], bar["close"])
    tick = sim.symbol_info_tick(SYM)
    nxt = week.iloc[i + 1]
    assert tick.time == srv_s("2024-07-03 10:01", 3) and tick.bid == nxt["open"]
    assert tick.ask == nxt["open"] + INST.spread_price(10)


def test_server_clock_summer_winter_and_fixed_offset() -> None:
    rows = [("2024-01-15 10:00", 1.09, 1.091, 1.089, 1.0905), ("2024-07-01 10:00", 1.07, 1.071, 1.069, 1.0705),
            ("2024-07-01 10:01", 1.0705, 1.0706, 1.0704, 1.0705)]
    for tz, winter, summer in (("Europe/Athens", 2, 3), ("+02:00", 2, 2), ("UTC", 0, 0)):
        sim = make(synthetic(rows), "2024-07-01 10:01", server_tz=tz)
        times = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 2)["time"]
        assert list(times) == [srv_s("2024-01-15 10:00", winter), srv_s("2024-07-01 10:00", summer)], tz
    # date arguments are server-clock values: int seconds, aware datetimes by their epoch, naive as wall clock
    sim = make(synthetic(rows), "2024-07-01 10:01")
    at = srv_s("2024-01-15 10:00", 2)
    for arg in (at, dt.datetime(2024, 1, 15, 12, 0, tzinfo=UTC), dt.datetime(2024, 1, 15, 12, 0),
                dt.datetime(2024, 1, 15, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))).astimezone()):
        got = sim.copy_rates_range(SYM, C.TIMEFRAME_M1, arg, arg)
        assert list(got["time"]) == [at], arg
    with pytest.raises(ValueError, match="neither an IANA zone"):
        make(synthetic(rows), "2024-07-01 10:01", server_tz="Mars/Olympus")


def test_one_request_is_capped_and_paging_gets_everything() -> None:
    n = MAX_BARS + 250
    idx = pd.date_range("2024-04-02", periods=n, freq="1min", tz="UTC", name="datetime")  # no DST change
    px = 1.08 + 0.0001 * np.sin(np.arange(n) / 50.0)
    bars = pd.DataFrame({"open": px, "high": px + 0.0002, "low": px - 0.0002, "close": px, "volume": 0.0}, idx)
    sim = make(bars, str(idx[-1]))
    newest = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 0, 2 * n)
    assert len(newest) == MAX_BARS and newest[-1]["tick_volume"] == 1  # the newest end, forming bar last
    got, frm = [], int(sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, n - 1, 1)[0]["time"])
    while True:
        page = sim.copy_rates_range(SYM, C.TIMEFRAME_M1, frm, 4_000_000_000)
        if not len(page):
            break
        got.append(page)
        frm = int(page[-1]["time"]) + 60
    assert [len(p) for p in got] == [MAX_BARS, 250]
    assert np.array_equal(np.concatenate(got)["time"], np.concatenate([sim.copy_rates_from_pos(
        SYM, C.TIMEFRAME_M1, n - MAX_BARS, MAX_BARS)["time"], newest[-250:]["time"]]))
    assert len(sim.copy_rates_from(SYM, C.TIMEFRAME_M1, 4_000_000_000, 2 * n)) == MAX_BARS


def test_advance_jumps_the_weekend_and_stops_after_the_data(week: pd.DataFrame) -> None:
    sim = make(week, "2024-07-05 20:58", end="2024-07-07 21:02")
    assert sim.sim_advance()  # 20:59 forms
    assert sim.sim_advance()  # Friday's last bar closed: straight to Sunday's first
    first = week.index[week.index.searchsorted(pd.Timestamp("2024-07-06", tz="UTC"))]
    assert first.weekday() == 6 and sim.sim_time() == first.timestamp()
    assert sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]["time"] == srv_s("2024-07-05 20:59", 3)
    steps = 0
    while sim.sim_advance():
        steps += 1
    end = pd.Timestamp("2024-07-07 21:02", tz="UTC")
    assert steps == len(week.loc[first:end])  # each bar forms in turn, then the last one closes
    assert not sim.sim_advance()
    tail = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 0, 2)
    last = week.loc[:end].iloc[-1]
    assert tuple(tail[-1])[1:5] == (last["open"], last["high"], last["low"], last["close"])  # closed, exact
    assert sim.terminal_info().connected and sim.account_info().balance == 100_000.0
    res = sim.order_send(deal_req(0.1, True))
    assert res.retcode == C.TRADE_RETCODE_MARKET_CLOSED and sim.positions_total() == 0


def test_speed_runs_the_clock_on_the_wall() -> None:
    rows = [(f"2024-07-08 10:{m:02d}", 1.1, 1.1, 1.1, 1.1) for m in range(5)]
    sim = make(synthetic(rows), "2024-07-08 10:00", speed=120.0)  # two virtual minutes per wall second
    t0 = sim.sim_time()
    sim.sim_sleep(6.0)  # 0.05 s on the wall
    assert 6.0 <= sim.sim_time() - t0 < 30.0
    assert sim.sim_advance() and sim.sim_time() >= pd.Timestamp("2024-07-08 10:01", tz="UTC").timestamp()
    assert sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]["time"] == srv_s("2024-07-08 10:00", 3)


# ====================================================================================== 3. backtest equality


def _decide(k: int, close: float, units: int) -> tuple[float, float | None, float | None] | None:
    """A fixed target path with stops on some orders: (signed lots to trade, sl, tp) or None."""
    targets = (0.0, 0.3, -0.2, 0.5, 0.5, -0.4, 0.0, 0.1, -1.2)
    target = targets[(k // 37) % len(targets)]
    delta = round(target - units / INST.contract_size, 2)
    if not delta:
        return None
    sl = tp = None
    if target and (k // 37) % 2:
        sl, tp = (close - 0.0004, close + 0.0006) if target > 0 else (close + 0.0004, close - 0.0006)
    return delta, sl, tp


def test_fills_equal_a_backtest_of_the_same_orders(week: pd.DataFrame) -> None:
    start, n = pd.Timestamp("2024-07-03 12:00", tz="UTC"), 1_800  # across the 21:00 UTC rollover
    i0 = week.index.get_loc(start)
    o, h, lo, c = (week[k].to_numpy() for k in ("open", "high", "low", "close"))
    minutes = (week.index.as_unit("s").asi8 // 60).tolist()

    ref = ForexSim(INST, 100_000.0, 30.0)
    ref_fills, ref_state = [], []
    for k in range(n):
        i = i0 + k
        order = _decide(k, float(c[i - 1]), ref.units)
        if order:
            ref.submit(*order)
        ref_fills.extend(ref.on_bar(minutes[i], float(o[i]), float(h[i]), float(lo[i]), float(c[i])))
        ref_state.append((ref.balance, ref.equity))
    assert ref.costs_swap != 0 and any(f.reason == "stop_loss" for f in ref_fills)
    assert any(f.reason == "take_profit" for f in ref_fills)

    sim = make(week, str(start))
    for k in range(n):
        last = sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]
        assert last["close"] == c[i0 + k - 1]
        acct = sim.account_info()
        if k:
            assert (acct.balance, acct.equity) == ref_state[k - 1], k  # exactly the backtest's, after bar k-1
        pos = sim.positions_get(symbol=SYM)
        units = 0 if not pos else INST.units(pos[0].volume) * (1 if pos[0].type == C.POSITION_TYPE_BUY else -1)
        order = _decide(k, float(last["close"]), units)
        if order:
            lots, sl, tp = order
            res = sim.order_send(deal_req(abs(lots), lots > 0, sl=sl or 0.0, tp=tp or 0.0, comment=f"k{k}"))
            assert res.retcode == C.TRADE_RETCODE_DONE, res
        assert sim.sim_advance()
    acct = sim.account_info()
    assert (acct.balance, acct.equity) == ref_state[-1]

    deals = [d for d in sim.history_deals_get(0, 4_000_000_000) if d.symbol == SYM]
    reasons = {"market": C.DEAL_REASON_EXPERT, "stop_loss": C.DEAL_REASON_SL, "take_profit": C.DEAL_REASON_TP}
    assert len(deals) == len(ref_fills)
    for d, f in zip(deals, ref_fills, strict=True):
        assert (d.price, d.commission, d.profit, d.reason) == (f.price, -f.commission, f.realised_pnl,
                                                               reasons[f.reason])
        assert d.volume == pytest.approx(abs(f.lots), abs=1e-12)
        assert d.type == (C.DEAL_TYPE_BUY if f.units > 0 else C.DEAL_TYPE_SELL)
        bar_srv = srv_s(str(pd.Timestamp(f.minute * 60, unit="s")), 3)
        assert d.time == (bar_srv if f.reason == "market" else bar_srv + 59)


# =============================================================================================== trading


def test_broker_fills_are_deals_with_mt5_comments() -> None:
    rows = [("2024-07-08 09:59", 1.1, 1.1, 1.1, 1.1), ("2024-07-08 10:00", 1.1, 1.1005, 1.0995, 1.1),
            ("2024-07-08 10:01", 1.1, 1.1002, 1.0985, 1.0988), ("2024-07-08 10:02", 1.0988, 1.099, 1.0965, 1.0968),
            ("2024-07-08 10:03", 1.0968, 1.0969, 1.0967, 1.0968)]
    sim = make(synthetic(rows), "2024-07-08 10:00")
    res = sim.order_send(deal_req(1.0, True, sl=1.099, tp=1.102, magic=77, comment="open long"))
    assert res.retcode == C.TRADE_RETCODE_DONE and res.price == 1.1 + 0.00003
    pid = res.order
    sim.sim_advance()
    sim.sim_advance()  # 10:01 closed: the stop-loss fired inside it
    assert sim.positions_get() == ()
    out = sim.history_deals_get(position=pid)
    assert [d.entry for d in out] == [C.DEAL_ENTRY_IN, C.DEAL_ENTRY_OUT]
    sl = out[1]
    assert (sl.reason, sl.comment, sl.price, sl.magic) == (C.DEAL_REASON_SL, "[sl 1.09900]", 1.099, 77)
    assert sl.profit == pytest.approx(100_000 * (1.099 - 1.10003)) and sl.commission == -3.5
    assert sl.time == srv_s("2024-07-08 10:01", 3) + 59
    orders = sim.history_orders_get(position=pid)
    assert [x.reason for x in orders] == [C.ORDER_REASON_EXPERT, C.ORDER_REASON_SL]
    assert sim.history_deals_get(ticket=orders[1].ticket) == (sl,)

    res = sim.order_send(deal_req(1.0, False, tp=1.097))
    sim.sim_advance()
    (tp,) = [d for d in sim.history_deals_get(position=res.order) if d.entry == C.DEAL_ENTRY_OUT]
    assert (tp.reason, tp.comment, tp.price) == (C.DEAL_REASON_TP, "[tp 1.09700]", 1.097)

    small = make(synthetic(rows[:2] + [("2024-07-08 10:01", 1.1, 1.1001, 1.07, 1.071)]), "2024-07-08 10:00",
                 cash=1_000.0)
    assert small.order_send(deal_req(0.25, True)).retcode == C.TRADE_RETCODE_DONE
    small.sim_advance()
    small.sim_advance()
    so = small.history_deals_get(0, 4_000_000_000)[-1]
    assert so.reason == C.DEAL_REASON_SO and so.comment.startswith("[so ") and so.price == 1.07
    assert small.account_info().balance == pytest.approx(1_000 - 2 * 0.875 + 25_000 * (1.07 - 1.10003))


def test_requests_are_checked_like_a_trade_server(week: pd.DataFrame) -> None:
    sim = make(week, "2024-07-03 10:00")
    req = deal_req(0.1, True)
    del req["type_filling"]  # ORDER_FILLING_FOK (0): this symbol allows IOC only
    assert sim.order_send(req).retcode == C.TRADE_RETCODE_INVALID_FILL
    assert sim.order_send(deal_req(0.015, True)).retcode == C.TRADE_RETCODE_INVALID_VOLUME
    assert sim.order_send(deal_req(40.0, True)).retcode == C.TRADE_RETCODE_NO_MONEY
    assert sim.order_check(deal_req(40.0, True)).retcode == C.TRADE_RETCODE_NO_MONEY
    ok = sim.order_check(deal_req(0.1, True))
    assert ok.retcode == 0 and ok.comment == "Done" and ok.margin > 0
    bid = sim.symbol_info_tick(SYM).bid
    assert sim.order_send(deal_req(0.1, True, sl=bid + 0.001)).retcode == C.TRADE_RETCODE_INVALID_STOPS
    assert sim.order_send({**deal_req(0.1, True), "volum": 1}) is None
    assert sim.last_error()[0] == C.RES_E_INVALID_PARAMS
    assert sim.positions_total() == 0 and sim.history_orders_total(0, 4_000_000_000) == 0

    long = sim.order_send(deal_req(0.3, True, magic=5, comment="x" * 40))
    assert long.request.comment == "x" * 31
    rev = sim.order_send(deal_req(0.5, False))  # netting: reverses to 0.2 short
    (pos,) = sim.positions_get()
    assert (pos.type, pos.volume, pos.identifier, pos.ticket) == (C.POSITION_TYPE_SELL, 0.2, long.order, rev.order)
    entries = [d.entry for d in sim.history_deals_get(position=long.order)]
    assert entries == [C.DEAL_ENTRY_IN, C.DEAL_ENTRY_INOUT]
    assert sim.order_send(deal_req(0.2, True, position=123)).retcode == C.TRADE_RETCODE_POSITION_CLOSED
    assert sim.order_send(deal_req(0.3, True, position=pos.ticket)).retcode == C.TRADE_RETCODE_INVALID_CLOSE_VOLUME

    ask = sim.symbol_info_tick(SYM).ask
    sltp = {"action": C.TRADE_ACTION_SLTP, "symbol": SYM, "position": pos.ticket, "sl": ask + 0.002, "tp": 0.0}
    assert sim.order_send({**sltp, "sl": ask - 0.001}).retcode == C.TRADE_RETCODE_INVALID_STOPS
    assert sim.order_send(sltp).retcode == C.TRADE_RETCODE_DONE
    assert sim.positions_get(ticket=pos.ticket)[0].sl == ask + 0.002
    assert sim.order_send(sltp).retcode == C.TRADE_RETCODE_NO_CHANGES

    close = sim.order_send(deal_req(0.2, True, position=pos.ticket))
    assert close.retcode == C.TRADE_RETCODE_DONE and sim.positions_get() == ()
    assert sim.history_deals_get(ticket=close.order)[0].entry == C.DEAL_ENTRY_OUT
    assert sim.copy_rates_from_pos(SYM, C.TIMEFRAME_H1, 0, 1) is None
    assert sim.last_error()[0] == C.RES_E_INVALID_PARAMS
    assert sim.symbol_info("GBPUSD") is None and sim.last_error()[0] == C.RES_E_NOT_FOUND
    frm = sim.copy_rates_from(SYM, C.TIMEFRAME_M1, dt.datetime(2024, 7, 3, 12, 58, tzinfo=UTC), 3)
    assert list(frm["time"]) == [srv_s(f"2024-07-03 09:{m}", 3) for m in (56, 57, 58)]


# ================================================================================================ 4. faults


def test_fault_specs_parse_and_refuse_nonsense() -> None:
    spec = FaultSpec.parse("requote=0.05, disconnect=0.002,timeout_executed=0.01")
    assert (spec.requote, spec.disconnect, spec.timeout_executed, spec.partial) == (0.05, 0.002, 0.01, 0.0)
    assert FaultSpec.parse("none") == FaultSpec() == FaultSpec.coerce(None)
    with pytest.raises(ValueError, match="'requot'"):
        FaultSpec.parse("requot=0.1")
    with pytest.raises(ValueError, match="partial"):
        FaultSpec.parse("partial=1.5")
    with pytest.raises(ValueError, match="must sum to at most 1"):
        FaultSpec(requote=0.6, partial=0.6)


def test_request_faults_come_at_their_rates_and_do_what_they_say(week: pd.DataFrame) -> None:
    p, n = 0.08, 2_500
    spec = ",".join(f"{k}={p}" for k in ("requote", "timeout_executed", "partial", "market_closed",
                                          "too_many_requests"))
    sim = make(week, "2024-07-02 08:00", faults=spec, seed=7)
    seen = {k: 0 for k in ("requote", "timeout_retcode", "timeout_none", "partial", "market_closed",
                           "too_many_requests", "done")}

    def net_units() -> int:
        pos = sim.positions_get()
        return 0 if not pos else INST.units(pos[0].volume) * (1 if pos[0].type == C.POSITION_TYPE_BUY else -1)

    for k in range(n):
        buy = k % 2 == 0
        before = net_units()
        res = sim.order_send(deal_req(0.02, buy, comment=f"r{k}"))
        err = sim.last_error()  # before any other call resets it
        now = sim.symbol_info_tick(SYM).time  # deals of this bar only: the history grows
        mine = [d for d in sim.history_deals_get(now, now) if d.comment == f"r{k}"]
        moved = net_units() - before
        if res is None:
            assert err == (C.RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
            seen["timeout_none"] += 1
        elif res.retcode == C.TRADE_RETCODE_TIMEOUT:
            assert res.deal == res.order == 0
            seen["timeout_retcode"] += 1
        elif res.retcode == C.TRADE_RETCODE_DONE_PARTIAL:
            assert res.volume == 0.01 and [d.volume for d in mine] == [0.01]
            assert sim.history_orders_get(ticket=res.order)[0].volume_current == 0.01  # the rest: not executed
            assert moved == (1_000 if buy else -1_000)
            seen["partial"] += 1
            continue
        else:
            key = {C.TRADE_RETCODE_REQUOTE: "requote", C.TRADE_RETCODE_MARKET_CLOSED: "market_closed",
                   C.TRADE_RETCODE_TOO_MANY_REQUESTS: "too_many_requests", C.TRADE_RETCODE_DONE: "done"}[res.retcode]
            seen[key] += 1
            if key != "done":
                assert not mine and moved == 0, key
                if key == "requote":
                    tick = sim.symbol_info_tick(SYM)
                    assert (res.bid, res.ask) == (tick.bid, tick.ask)
                continue
        # DONE or timed out: executed in full, and findable by the request's comment
        assert [d.volume for d in mine] == [0.02] and moved == (2_000 if buy else -2_000), k
        if k % 5 == 4:
            sim.sim_advance()
    stats = sim.sim_stats()
    assert stats["requests"] == n
    assert seen["timeout_retcode"] + seen["timeout_none"] == stats["timeout_executed"]
    assert (seen["timeout_retcode"], seen["timeout_none"]) == (stats["timeout_executed_retcode"],
                                                               stats["timeout_executed_none"])
    assert min(seen["timeout_retcode"], seen["timeout_none"]) > 0
    for key in ("requote", "partial", "market_closed", "too_many_requests", "timeout_executed"):
        assert abs(stats[key] / n - p) < 0.025, (key, stats[key])
        if key != "timeout_executed":
            assert seen[key] == stats[key], key
    assert seen["done"] == n - sum(stats[k] for k in ("requote", "partial", "market_closed", "too_many_requests",
                                                      "timeout_executed"))


def test_disconnects_refuse_calls_until_a_reconnect_and_lose_no_bar(week: pd.DataFrame) -> None:
    p, n = 0.02, 1_500
    sim = make(week, "2024-07-02 00:00", faults=f"disconnect={p}", seed=3)
    sim.order_send(deal_req(0.1, True))
    srv_all = week.index.as_unit("s").asi8 + 3 * 3600  # EEST
    last_seen = int(sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]["time"])
    outages = 0
    for _ in range(n):
        assert sim.sim_advance()
        if sim.account_info() is not None:
            newest_closed = int(sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 1, 1)[0]["time"])
            assert newest_closed == srv_all[np.searchsorted(srv_all, last_seen) + 1]  # the next bar, none skipped
            last_seen = newest_closed
            continue
        outages += 1
        assert sim.last_error() == (C.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
        assert sim.copy_rates_from_pos(SYM, C.TIMEFRAME_M1, 0, 5) is None
        assert sim.positions_get() is None and sim.positions_total() is None
        assert sim.order_send(deal_req(0.1, True)) is None and sim.last_error()[0] == C.RES_E_INTERNAL_FAIL_CONNECT
        assert sim.symbol_select(SYM) is False
        waited = 0.0
        while not sim.initialize(login=LOGIN, password=PASSWORD, server=SERVER):
            assert sim.last_error()[0] == C.RES_E_INTERNAL_FAIL_INIT
            sim.sim_sleep(15.0)
            waited += 15.0
            assert sim.account_info() is None  # down, or over but the link is lost until a reconnect
        assert 0 < waited <= 615.0  # an outage lasts 30 .. 600 s; the first try came right after it began
        # backfill: every bar that closed meanwhile is there, with its exact values
        now_srv = int(sim.symbol_info_tick(SYM).time)
        back = sim.copy_rates_range(SYM, C.TIMEFRAME_M1, last_seen + 60, now_srv)
        expect = week.loc[pd.Timestamp(last_seen - 3 * 3600 + 60, unit="s", tz="UTC"):
                          pd.Timestamp(now_srv - 3 * 3600, unit="s", tz="UTC")]
        assert list(back["time"]) == [srv_s(str(t.tz_localize(None)), 3) for t in expect.index]
        assert np.array_equal(back["close"][:-1], week["close"].loc[expect.index[:-1]].to_numpy())
        last_seen = int(back["time"][-2]) if back["time"][-1] == now_srv else int(back["time"][-1])
    stats = sim.sim_stats()
    assert outages > 10 and stats["disconnect"] >= outages and stats["refused_initialize"] >= outages
    assert abs(stats["disconnect"] / stats["bars_while_up"] - p) < 0.012
    assert 30 * stats["disconnect"] <= stats["disconnect_seconds"] <= 600 * stats["disconnect"]


# =========================================================================================== 5. credentials


def test_credentials_and_no_password_anywhere(week: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = TerminalSimulator(bars=week, symbol=SYM, start="2024-07-03 10:00", password=PASSWORD, faults="disconnect=0.5",
                            seed=1)
    for kw in ({"login": LOGIN, "password": "wrong", "server": SERVER}, {"login": LOGIN + 1, "password": PASSWORD},
               {"login": LOGIN, "password": PASSWORD, "server": "Other-Live"}, {"login": LOGIN}):
        assert sim.initialize(**kw) is False
        assert sim.last_error() == (C.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
        assert sim.account_info() is None
    assert sim.initialize(login=LOGIN, password=PASSWORD, server=SERVER)
    assert sim.login(LOGIN, password="nope") is False and sim.last_error()[0] == C.RES_E_AUTH_FAILED
    assert sim.login(LOGIN, password=PASSWORD, server=SERVER)
    results = [sim.account_info(), sim.terminal_info(), sim.symbol_info(SYM), sim.order_send(deal_req(0.1, True)),
               sim.positions_get(), sim.history_deals_get(0, 4_000_000_000), sim.last_error(), sim.sim_stats()]
    sim.sim_advance()
    texts = [repr(sim), str(sim), repr(vars(sim)), *map(repr, results), *map(str, results), caplog.text]
    assert all(PASSWORD not in t for t in texts)


# ==================================================================================== 6. mt5linux end to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mt5linux_client_end_to_end(week: pd.DataFrame) -> None:
    mt5linux = pytest.importorskip("mt5linux")
    sim = TerminalSimulator(bars=week, symbol=SYM, start="2024-07-03 10:00", password=PASSWORD)
    server = serve(sim, 0, block=False)
    try:
        assert server.host == "127.0.0.1"
        mt5 = mt5linux.MetaTrader5(host="127.0.0.1", port=server.port)
        try:
            assert not mt5.initialize(login=LOGIN, password="bad", server=SERVER)
            assert tuple(mt5.last_error()) == (C.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
            assert mt5.initialize(login=LOGIN, password=PASSWORD, server=SERVER)
            assert mt5.account_info().balance == 100_000.0 and mt5.account_info().login == LOGIN
            rates = mt5.copy_rates_from_pos(SYM, mt5.TIMEFRAME_M1, 1, 3)
            assert isinstance(rates, np.ndarray) and rates.dtype == RATES_DTYPE
            assert rates[-1]["close"] == week.loc["2024-07-03 09:59", "close"]
            res = mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": SYM, "volume": 0.1,
                                  "type": mt5.ORDER_TYPE_BUY, "type_filling": mt5.ORDER_FILLING_IOC,
                                  "magic": 9, "comment": "over rpyc"})
            assert res.retcode == mt5.TRADE_RETCODE_DONE and res._asdict()["volume"] == 0.1
            (pos,) = mt5.positions_get(symbol=SYM)
            assert (pos.ticket, pos.magic, pos.comment) == (res.order, 9, "over rpyc")
            assert mt5.eval("mt5.sim_advance()") is True
            assert mt5.eval("mt5.sim_time()") == pd.Timestamp("2024-07-03 10:01", tz="UTC").timestamp()
            got = mt5.copy_rates_range(SYM, mt5.TIMEFRAME_M1, dt.datetime(2024, 7, 3, 13, 0, tzinfo=UTC),
                                       dt.datetime(2024, 7, 3, 13, 0, tzinfo=UTC))
            assert tuple(got[0])[1:5] == tuple(week.loc["2024-07-03 10:00", ["open", "high", "low", "close"]])
            deals = mt5.history_deals_get(dt.datetime(2024, 7, 1, tzinfo=UTC), dt.datetime(2024, 7, 9, tzinfo=UTC))
            assert [d.comment for d in deals] == ["Deposit", "over rpyc"]
            mt5.shutdown()
        finally:
            mt5._MetaTrader5__conn.close()
    finally:
        server.close()
    assert sys.modules.get("MetaTrader5") is not server._module  # the module table is restored


def test_the_server_refuses_other_hosts(week: pd.DataFrame) -> None:
    pytest.importorskip("rpyc")
    sim = TerminalSimulator(bars=week, symbol=SYM, start="2024-07-03 10:00")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ValueError, match="arbitrary code"):
        SimServer(sim, 0, "0.0.0.0")


def test_the_server_cli_serves_real_data(fx_dir: Path) -> None:
    mt5linux = pytest.importorskip("mt5linux")
    bad = subprocess.run([sys.executable, "-m", "stores.mt5_sim_server", "--sim-data", str(fx_dir), "--sim-start",
                          "2024-07-03", "--sim-faults", "requot=0.1"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown fault 'requot'" in bad.stderr and "Traceback" not in bad.stderr
    port = _free_port()
    env = {**os.environ, "MT5_SIM_PASSWORD": PASSWORD, "MT5_SIM_LOGIN": str(LOGIN)}
    proc = subprocess.Popen([sys.executable, "-m", "stores.mt5_sim_server", "--sim-data", str(fx_dir), "--symbol",
                             SYM, "--sim-start", "2024-07-03 10:00", "--sim-end", "2024-07-04", "--history-days", "1",
                             "--sim-faults", "none", "--port", str(port)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                mt5 = mt5linux.MetaTrader5(host="127.0.0.1", port=port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert mt5.initialize(login=LOGIN, password=PASSWORD)
        assert mt5.symbol_info(SYM).digits == INST.digits
        first = mt5.copy_rates_from_pos(SYM, mt5.TIMEFRAME_M1, 0, 10_000)
        assert pd.Timestamp(int(first[0]["time"]), unit="s") >= pd.Timestamp("2024-07-02 03:00")  # one day of history
        mt5._MetaTrader5__conn.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert PASSWORD not in out
