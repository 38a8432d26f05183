"""Live trading on MetaTrader 5 through the terminal simulator: the same fills as a backtest, every retcode row of the
policy table, faults that neither lose nor duplicate an order, a SIGKILL and restart, credentials that never leak."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from brokers.instruments import get_instrument
from brokers.mt5 import RETCODE_POLICY, Action, MT5Broker, policy
from feeds.loaders import load_bars
from feeds.paths import REPO_ROOT
from stores.mt5 import Credentials, MT5Store, StoreConfig
from stores.mt5_sim import TerminalSimulator

START, END = "2024-03-04", "2024-03-05"
HISTORY = "35"  # days: enough for the H4 warm-up; both runs load the same
CMP = ["datetime", "minute", "lots", "price", "commission", "spread_cost", "realised_pnl", "reason", "opened_lots",
       "closed_lots", "units"]


def _run(script: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), "--no-progress", "--no-tearsheet", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("strategy", "history"), [("random", HISTORY), ("sma_cross", "8"), ("mtf_marl", HISTORY)])
def test_a_live_run_on_the_simulator_fills_as_the_backtest(strategy: str, history: str, fx_dir: Path,
                                                            tmp_path: Path) -> None:
    """run_live.py --backend sim over real bars gives run_backtest.py's fills, equity and figures, bar for bar (the
    random agent sizes through the validator from features computed bar by bar; sma_cross reads the live M5 and H4
    feeds)."""
    bt_out, live_out = tmp_path / "bt", tmp_path / "live"
    bt = _run("run_backtest.py", "--strategy", strategy, "--data", str(fx_dir), "--symbol", "EURUSD",
              "--start", START, "--end", END, "--history-days", history, "--out", str(bt_out))
    assert bt.returncode == 0, bt.stderr
    live = _run("run_live.py", "--strategy", strategy, "--backend", "sim", "--sim-data", str(fx_dir), "--symbol",
                "EURUSD", "--sim-start", START, "--sim-end", END, "--history-days", history, "--out", str(live_out))
    assert live.returncode == 0, live.stderr
    a, b = pd.read_csv(bt_out / "fills.csv"), pd.read_csv(live_out / "fills.csv")
    assert len(a) == len(b) > (5 if strategy != "mtf_marl" else -1)  # the committed MTF-MARL agent does not trade
    pd.testing.assert_frame_equal(a[CMP], b[CMP])
    pd.testing.assert_frame_equal(pd.read_csv(bt_out / "equity.csv"), pd.read_csv(live_out / "equity.csv"))
    sa, sb = (json.loads((o / "summary.json").read_text()) for o in (bt_out, live_out))
    for k in ("total_return", "sharpe", "sortino", "max_drawdown", "max_daily_drawdown", "trades", "fills", "costs",
              "bars", "history_bars", "buy_hold_return"):
        assert sa[k] == sb[k], k
    lv = sb["live"]
    assert (lv["duplicates"], lv["lost"], lv["final_units"]) == (0, 0, lv["intended_units"])
    assert pd.read_csv(live_out / "trades.csv").equals(pd.read_csv(bt_out / "trades.csv"))


def test_a_breach_closed_on_the_terminal_leaves_the_intended_position(fx_dir: Path, tmp_path: Path) -> None:
    """sma_cross (1 lot, no validator) under a 0.4 % total limit: the terminal's protective stop at the floor closes
    the position, later entries are refused by the halt; the intended position is then flat, as the account is
    (found in a month-long run, where the strategy's last order still counted as intended)."""
    out = tmp_path / "live"
    live = _run("run_live.py", "--strategy", "sma_cross", "--backend", "sim", "--sim-data", str(fx_dir), "--symbol",
                "EURUSD", "--sim-start", START, "--sim-end", END, "--history-days", "8", "--daily-limit", "0.003",
                "--total-limit", "0.004", "--out", str(out))
    assert live.returncode == 0, live.stderr
    fills = pd.read_csv(out / "fills.csv")
    s = json.loads((out / "summary.json").read_text())
    assert fills["reason"].iloc[-1] == "equity_stop" and s["cmdp"]["halted"]
    assert [b["kind"] for b in s["cmdp"]["breaches"]] == ["total"]
    lv = s["live"]
    assert lv["final_units"] == lv["intended_units"] == 0 and (lv["duplicates"], lv["lost"]) == (0, 0)


# --------------------------------------------------------------------------- the retcode table, row by row

@pytest.fixture(scope="module")
def days(fx_dir: Path) -> pd.DataFrame:
    return load_bars(fx_dir, symbol="EURUSD", start="2024-07-08", end="2024-07-09")


class _Bar:
    """The M1 feed as the broker reads it: one bar (``len``, ``datetime[0]``, OHLC ``[0]``)."""

    def __init__(self, sim: TerminalSimulator) -> None:
        self.sim, self.n = sim, 0

    def __len__(self) -> int:
        return self.n

    def step(self) -> None:
        r = self.sim.copy_rates_from_pos("EURUSD", 1, 1, 1)[0]  # the last closed bar
        self.n += 1
        num = pd.Timestamp(self.sim.sim_time() - 60, unit="s").to_pydatetime()
        import backtrader as bt

        self.datetime = [bt.date2num(num)]
        self.open, self.high, self.low, self.close = [r["open"]], [r["high"]], [r["low"]], [r["close"]]


def _broker(days: pd.DataFrame, tmp_path: Path, faults: str = "none",
            filling_mode: int = 2) -> tuple[MT5Broker, TerminalSimulator, _Bar]:
    sim = TerminalSimulator(bars=days, symbol="EURUSD", start="2024-07-08 10:00", faults=faults, seed=3,
                            filling_mode=filling_mode)
    store = MT5Store(StoreConfig(backend="sim", symbol="EURUSD", server_tz="Europe/Athens"),
                     Credentials(login=10_000_001, server="MTF-Simulator"), api=sim)
    broker = MT5Broker(store, get_instrument("EURUSD"), journal=tmp_path / "journal.sqlite")
    data = _Bar(sim)
    broker.set_data(data)
    broker.start()
    sim.sim_advance()
    data.step()
    broker.next()
    return broker, sim, data


def _restarted(sim: TerminalSimulator, tmp_path: Path) -> MT5Broker:
    """A new broker process on the same terminal and journal (what a restart after a crash starts with)."""
    store = MT5Store(StoreConfig(backend="sim", symbol="EURUSD", server_tz="Europe/Athens"),
                     Credentials(login=10_000_001, server="MTF-Simulator"), api=sim)
    again = MT5Broker(store, get_instrument("EURUSD"), journal=tmp_path / "journal.sqlite")
    again.set_data(_Bar(sim))
    again.start()
    return again


def _answering(broker: MT5Broker, answers: list[int | None], execute: bool = False):
    """Make the next ``len(answers)`` order requests answer these retcodes (None: no answer); with ``execute`` the
    terminal executes them all the same (the dangerous timeout); then the terminal answers itself."""
    real = broker.store.send
    left = list(answers)

    def send(request: dict):
        if request.get("action") != 1 or not left:
            return real(request)
        code = left.pop(0)
        if execute:
            real(request)
        if code is None:
            return None, (-10005, "IPC timeout")
        return SimpleNamespace(retcode=code, deal=0, order=0, volume=0.0, price=0.0, comment="test"), (1, "Success")

    broker.store.send = send


def test_every_retcode_has_a_row() -> None:
    codes = {10004, 10006, 10008, 10009, 10010, 10011, 10012, 10013, 10014, 10015, 10016, 10017, 10018, 10019, 10020,
             10021, 10024, 10026, 10027, 10030, 10031}
    assert set(RETCODE_POLICY) == codes
    assert policy(None) == ("NO_ANSWER", Action.UNKNOWN) and policy(10099) == ("RETCODE_10099", Action.REJECT)


def test_done_fills_and_is_journaled(days, tmp_path) -> None:
    broker, sim, _ = _broker(days, tmp_path)
    assert broker.order_units(100_000) == 100_000
    assert broker.account.units == 100_000 and broker.stats.requests == 1
    (intent,) = broker.journal.intents()
    assert (intent.status, intent.executed_units, intent.units) == ("filled", 100_000, 100_000)
    assert len(broker.fills) == 1 and broker.fills[0].price == pytest.approx(sim.symbol_info_tick("EURUSD").ask)


@pytest.mark.parametrize("code", [10004, 10020, 10021, 10024])
def test_price_moves_and_too_many_requests_are_retried(days, tmp_path, code) -> None:
    broker, _, _ = _broker(days, tmp_path)
    _answering(broker, [code])
    assert broker.order_units(50_000) == 50_000
    assert broker.stats.retries == 1 and broker.stats.requests == 2 and broker.account.units == 50_000


@pytest.mark.parametrize("code", [10012, 10011, 10031, None])
def test_an_unknown_outcome_is_reconciled_never_resent(days, tmp_path, code) -> None:
    """The order executed but the answer says timeout / error / connection, or nothing came back: the deal is found
    by our client id and the order is not sent again."""
    broker, sim, _ = _broker(days, tmp_path)
    _answering(broker, [code], execute=True)
    assert broker.order_units(30_000) == 30_000
    assert broker.stats.requests == 1 and broker.stats.unknown_outcomes == 1 and broker.stats.reconciled == 1
    assert broker.account.units == 30_000 and len(sim.positions_get()) == 1
    (intent,) = broker.journal.intents()
    assert intent.status == "filled" and intent.deals


@pytest.mark.parametrize("code", [10012, None])
def test_an_unknown_outcome_that_did_not_execute_is_not_executed(days, tmp_path, code) -> None:
    broker, _, _ = _broker(days, tmp_path)
    _answering(broker, [code], execute=False)
    assert broker.order_units(30_000) == 0 and broker.account.units == 0 and broker.stats.requests == 1
    assert broker.journal.intents()[0].status == "not_executed"


def test_placed_is_checked_against_the_deals(days, tmp_path) -> None:
    broker, _, _ = _broker(days, tmp_path)
    _answering(broker, [10008], execute=True)
    assert broker.order_units(20_000) == 20_000 and broker.stats.unknown_outcomes == 0


def test_an_invalid_filling_mode_moves_to_the_next(days, tmp_path) -> None:
    broker, _, _ = _broker(days, tmp_path, filling_mode=3)  # the symbol allows FOK and IOC
    assert broker._filling[:2] == [1, 0]  # IOC first, then FOK
    sent: list[int] = []
    real = broker.store.send

    def send(request: dict):
        if request.get("action") == 1:
            sent.append(request["type_filling"])
            if len(sent) == 1:
                return SimpleNamespace(retcode=10030, deal=0, order=0, volume=0.0, price=0.0, comment=""), (1, "")
        return real(request)

    broker.store.send = send
    assert broker.order_units(10_000) == 10_000
    assert sent == [1, 0] and broker.stats.retries == 1


@pytest.mark.parametrize("code", [10014, 10016, 10019, 10015, 10013, 10006])
def test_refusals_are_rejections_with_their_reason(days, tmp_path, code) -> None:
    broker, _, _ = _broker(days, tmp_path)
    _answering(broker, [code])
    assert broker.order_units(10_000) == 0 and broker.stats.requests == 1
    name = RETCODE_POLICY[code][0]
    assert broker.stats.rejected == {name: 1} and broker.journal.intents()[0].status == "rejected"


@pytest.mark.parametrize("code", [10018, 10017, 10027, 10026])
def test_closed_markets_halt_new_orders_until_the_next_bar(days, tmp_path, code) -> None:
    broker, sim, data = _broker(days, tmp_path)
    _answering(broker, [code])
    assert broker.order_units(10_000) == 0
    assert broker.order_units(10_000) == 0 and broker.stats.requests == 1  # halted: not even sent
    assert any(k.startswith("no new orders") for k in broker.stats.rejected)
    sim.sim_advance()
    data.step()
    broker.next()
    assert broker.order_units(10_000) == 10_000


def test_partial_fills_send_the_rest(days, tmp_path) -> None:
    broker, sim, _ = _broker(days, tmp_path, faults="partial=1.0")
    got = broker.order_units(300_000)
    intents = broker.journal.intents()
    assert got == broker.account.units and len(intents) > 1 and intents[0].status == "partial"
    assert sum(i.executed_units for i in intents) == got


def test_a_restart_reconciles_an_intent_the_crash_left_open(days, tmp_path) -> None:
    """An intent recorded, sent, executed, and then the process died before hearing back: the next start finds the
    deal by its client id, and the position is the terminal's."""
    broker, sim, _ = _broker(days, tmp_path)
    cid = broker.journal.new_cid()
    broker.journal.intend(cid, broker.store.now(), broker._minute, "EURUSD", 40_000, 40_000)
    sim.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.4, "type": 0, "magic": broker.magic,
                    "comment": cid, "type_filling": 1, "type_time": 0, "deviation": 20})
    broker.journal.close()
    again = _restarted(sim, tmp_path)
    assert again.stats.reconciled == 1 and again.account.units == 40_000
    assert again.journal.intents()[-1].status == "filled" and again.journal.run == 2


# --------------------------------------------------------------------------- faults, end to end

def test_faults_lose_nothing_and_duplicate_nothing(fx_dir: Path, tmp_path: Path) -> None:
    """Requote storms, disconnects, timeouts that executed, partial fills, closed markets: every unknown outcome is
    reconciled, nothing is sent twice or lost, the final position is the one the strategy wanted."""
    out = tmp_path / "live"
    p = _run("run_live.py", "--strategy", "sma_cross", "--backend", "sim", "--sim-data", str(fx_dir), "--symbol",
             "EURUSD", "--sim-start", START, "--sim-end", END, "--history-days", "8", "--out", str(out),
             "--sim-faults", "requote=0.15,disconnect=0.004,timeout_executed=0.15,partial=0.15,market_closed=0.03,"
                             "too_many_requests=0.03", "--sim-seed", "5")
    assert p.returncode == 0, p.stderr[-3000:]
    lv = json.loads((out / "summary.json").read_text())["live"]
    sim = lv["simulator"]
    assert sim["timeout_executed"] > 0 and sim["disconnect"] > 0 and sim["requote"] > 0 and sim["partial"] > 0
    assert lv["duplicates"] == 0 and lv["lost"] == 0
    assert lv["unknown_outcomes"] > 0 and lv["reconciled"] >= lv["unknown_outcomes"]
    assert lv["reconnects"] >= sim["disconnect"] > 0
    assert lv["final_units"] == lv["intended_units"]
    db = sqlite3.connect(out / "journal.sqlite")
    assert db.execute("SELECT COUNT(*) FROM intents WHERE status IN ('sent', 'unknown')").fetchone() == (0,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_live_process_restarts_without_duplicates(fx_dir: Path, tmp_path: Path) -> None:
    """The terminal (our simulator behind the mt5linux bridge) outlives the trader: SIGKILL mid-run, restart with the
    same journal: positions and open intents are reconciled, no order is duplicated or lost."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "stores.mt5_sim_server", "--sim-data", str(fx_dir), "--symbol",
                               "EURUSD", "--sim-start", START, "--sim-end", END, "--history-days", "8",
                               "--port", str(port), "--sim-faults", "timeout_executed=0.2", "--sim-seed", "2"],
                              cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "live"
    args = [sys.executable, str(REPO_ROOT / "run_live.py"), "--no-progress", "--no-tearsheet", "--strategy",
            "sma_cross", "--backend", "mt5linux", "--symbol", "EURUSD", "--port", str(port), "--sim-clock",
            "--server-tz", "Europe/Athens", "--history-days", "8", "--out", str(out)]
    env = {**os.environ, "MT5_LOGIN": "10000001", "MT5_SERVER": "MTF-Simulator"}
    try:
        for _ in range(100):  # the server is up when the port answers
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        first = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        journal = out / "journal.sqlite"
        deadline = time.time() + 300
        while time.time() < deadline:
            if journal.exists():
                try:
                    n = sqlite3.connect(journal).execute("SELECT COUNT(*) FROM intents").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
                if n >= 8:
                    break
            if first.poll() is not None:
                pytest.fail(f"the first run ended early: {first.stderr.read()[-2000:]}")
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        second = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        server.terminate()
        server.wait(30)
    lv = json.loads((out / "summary.json").read_text())["live"]
    assert lv["duplicates"] == 0 and lv["lost"] == 0 and lv["final_units"] == lv["intended_units"]
    db = sqlite3.connect(out / "journal.sqlite")
    assert db.execute("SELECT MAX(run) FROM intents").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM intents WHERE status IN ('sent', 'unknown')").fetchone() == (0,)
    start = json.loads(db.execute("SELECT detail FROM events WHERE kind = 'start' AND run = 2").fetchone()[0])
    assert "position_lots" in start and start["reconciled_intents"] >= 0


# --------------------------------------------------------------------------- credentials

def test_credentials_never_leak(fx_dir: Path, tmp_path: Path) -> None:
    secret, login = "S3cr3t-pa55w0rd", "98765432"
    creds = Credentials.from_env({"MT5_LOGIN": login, "MT5_PASSWORD": secret, "MT5_SERVER": "Broker-Demo"})
    store = MT5Store(StoreConfig(backend="mt5linux", symbol="EURUSD", port=1), creds)
    for obj in (creds, store, str(creds)):
        assert secret not in repr(obj) and login not in repr(obj)
    with pytest.raises(Exception) as err:  # nothing listens on port 1: the error message must not hold them
        store.connect()
    assert secret not in str(err.value) and login not in str(err.value)
    out = tmp_path / "live"
    p = _run("run_live.py", "--strategy", "sma_cross", "--backend", "sim", "--sim-data", str(fx_dir), "--symbol",
             "EURUSD", "--sim-start", START, "--sim-end", "2024-03-04", "--history-days", "3", "--out", str(out),
             env={"MT5_SIM_PASSWORD": secret, "MT5_PASSWORD": secret, "MT5_LOGIN": login})
    assert p.returncode == 0, p.stderr
    assert secret not in p.stdout + p.stderr and login not in p.stdout + p.stderr
    for f in out.iterdir():
        assert secret.encode() not in f.read_bytes() and login.encode() not in f.read_bytes(), f.name


def test_a_deal_of_ours_without_an_intent_is_adopted_at_start(days, tmp_path) -> None:
    """An order of ours that executed but whose intent never reached the journal (a power cut): found at start by
    its magic number and client-id comment, adopted, and neither lost nor sent again."""
    broker, sim, _ = _broker(days, tmp_path)
    sim.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.2, "type": 1, "magic": broker.magic,
                    "comment": "mtf-00042-0000001", "type_filling": 1, "type_time": 0, "deviation": 20})
    broker.journal.close()
    again = _restarted(sim, tmp_path)
    adopted = [i for i in again.journal.intents() if i.cid == "mtf-00042-0000001"]
    assert adopted and adopted[0].status == "filled" and adopted[0].executed_units == -20_000
    assert again.account.units == -20_000 and again.live_summary()["lost"] == 0
