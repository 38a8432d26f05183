"""The MetaTrader 5 store: owns the terminal connection and hands out the live feed and the live broker.

Backtrader's Store pattern (its IB and Oanda stores), wired explicitly: no singleton metaclass; ``cerebro.addstore``
makes Cerebro call ``start``/``stop`` and deliver ``get_notifications`` to ``Strategy.notify_store``. One small
interface over three backends, all imported lazily (nothing outside ``stores/`` imports them; an import-linter
contract says so):

* ``mt5``: the official ``MetaTrader5`` module (Windows only: it ships win_amd64 wheels);
* ``mt5linux``: the rpyc bridge to a terminal under Wine (``mt5linux==1.0.11``; 1.1.x does not parse on 3.11);
* ``sim``: our terminal simulator (``stores.mt5_sim.TerminalSimulator``), in process.

Credentials come from ``MT5_LOGIN`` / ``MT5_PASSWORD`` / ``MT5_SERVER`` (or the keyring when installed), never from
the command line, and never reach a log line, an exception message, a file or a ``repr``. IPC errors (-10003,
-10004, -10005) and a lost connection are retried with capped exponential back-off and full jitter (seeded);
orders are never retried here (the broker reconciles uncertain outcomes first). Broker server time: bars' ``time``
fields are the server's wall clock written as if it were UTC; a configured zone or UTC offset converts them, and an
estimate from ``symbol_info_tick().time`` against the clock is checked against it (a warning when they disagree).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

Backend = Literal["mt5", "mt5linux", "sim"]
IPC_ERRORS = (-10003, -10004, -10005)
"""RES_E_INTERNAL_FAIL_INIT / _CONNECT / _TIMEOUT: the terminal link, not the request, failed"""
# Defined on the mt5linux server once: turns a result into plain data (dicts, lists, arrays), so one request is one
# round trip (a result left on the server as an rpyc proxy costs one round trip per attribute read).
_PLAIN = """
def _mtf_plain(x):
    import numpy
    if x is None or isinstance(x, (bool, int, float, str, bytes, numpy.ndarray)):
        return x
    if hasattr(x, "_asdict"):
        return {"__result__": type(x).__name__, **{k: _mtf_plain(v) for k, v in x._asdict().items()}}
    if isinstance(x, dict):
        return {k: _mtf_plain(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return {"__seq__": [_mtf_plain(v) for v in x]}
    return x
"""


class Result(SimpleNamespace):
    """A MetaTrader 5 result brought over the mt5linux bridge as plain data, read by attribute like the original."""

    def _asdict(self) -> dict[str, Any]:
        return dict(vars(self))


def _local(x: Any) -> Any:
    if isinstance(x, dict):
        if "__seq__" in x:
            return tuple(_local(v) for v in x["__seq__"])
        if "__result__" in x:
            return Result(**{k: _local(v) for k, v in x.items() if k != "__result__"})
        return {k: _local(v) for k, v in x.items()}
    return x
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclass(frozen=True)
class Credentials:
    """Account login, password and server; printed as ``Credentials(login=***, server=..., password=***)``."""

    login: int | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    server: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(login={'***' if self.login else None}, server={self.server!r}, password=***)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials:
        """From ``MT5_LOGIN`` / ``MT5_PASSWORD`` / ``MT5_SERVER``; the password from the keyring (service
        ``mtf-marl-mt5``, user = the login) when the variable is unset and ``keyring`` is installed."""
        env = os.environ if environ is None else environ
        raw = env.get("MT5_LOGIN")
        try:
            login = int(raw) if raw else None
        except ValueError:
            raise ValueError("MT5_LOGIN must be the account number (digits only)") from None
        password = env.get("MT5_PASSWORD")
        if password is None and login is not None:
            try:
                import keyring

                password = keyring.get_password("mtf-marl-mt5", str(login))
            except Exception:  # keyring not installed, or no backend: the terminal may have it saved
                password = None
        return cls(login=login, password=password, server=env.get("MT5_SERVER"))


@dataclass(frozen=True)
class StoreConfig:
    """:param backend: ``mt5``, ``mt5linux`` or ``sim``
    :param symbol: the one instrument traded
    :param host: mt5linux's rpyc server (a terminal under Wine, or ``stores.mt5_sim_server``)
    :param port: its port
    :param server_tz: the broker server's clock: an IANA zone (``Europe/Athens``) or a fixed offset (``+02:00``);
        None: estimated from the tick time (a fixed offset: a DST change is then only warned about)
    :param terminal_path: path to terminal64.exe (``mt5`` backend; None: the module finds it)
    :param timeout_ms: the terminal's connection timeout
    :param max_reconnect_attempts: reconnect attempts before giving up (the run then stops with an error)
    :param backoff_base_s: first back-off delay
    :param backoff_cap_s: largest back-off delay
    :param seed: seeds the back-off jitter (reproducible runs)
    :param sim_clock: the terminal is our simulator served over rpyc: drive its virtual clock (tests, paper runs)
    """

    backend: Backend
    symbol: str
    host: str = "127.0.0.1"
    port: int = 18812
    server_tz: str | None = None
    terminal_path: str | None = None
    timeout_ms: int = 60_000
    max_reconnect_attempts: int = 60
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    seed: int = 0
    sim_clock: bool = False

    def __post_init__(self) -> None:
        if self.backend not in ("mt5", "mt5linux", "sim"):
            raise ValueError(f"unknown MT5 backend {self.backend!r}: use mt5, mt5linux or sim")
        if self.server_tz is not None:
            parse_zone(self.server_tz)


def parse_zone(name: str) -> dt.tzinfo:
    """An IANA zone or a fixed ``+HH:MM`` offset; fails loudly on anything else."""
    m = _OFFSET_RE.match(name.strip())
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(name)
    except Exception as e:
        raise ValueError(f"unknown server time zone {name!r}: an IANA name (Europe/Athens) or an offset "
                         "(+02:00)") from e


class TerminalError(RuntimeError):
    """The terminal could not be reached or refused us; the message never holds credentials."""


class MT5Store:
    """:param config: backend, symbol, clock and retry settings
    :param credentials: account credentials (default: from the environment)
    :param api: the terminal object for ``backend="sim"`` (a ``TerminalSimulator``)"""

    def __init__(self, config: StoreConfig, credentials: Credentials | None = None, api: Any = None) -> None:
        self.config = config
        self._creds = credentials if credentials is not None else Credentials.from_env()
        self._api = api
        if config.backend == "sim" and api is None:
            raise ValueError("backend 'sim' needs the simulator: MT5Store(config, api=TerminalSimulator(...))")
        self._notifs: deque = deque()
        self._rng = random.Random(config.seed)
        self.connected = False
        self.started = False
        self.reconnects = 0
        self.ipc_errors = 0
        self._zone = parse_zone(config.server_tz) if config.server_tz else None
        self._offset_s: float | None = None  # estimated server - UTC seconds, when no zone is configured
        self.on_reconnect: list[Callable[[], None]] = []  # the feed backfills, the broker reconciles

    def __repr__(self) -> str:
        return f"MT5Store(backend={self.config.backend!r}, symbol={self.config.symbol!r}, connected={self.connected})"

    # ------------------------------------------------------------------ Backtrader's store protocol
    def start(self, data: Any = None, broker: Any = None) -> None:
        if not self.started:
            self.started = True
            self.connect()

    def stop(self) -> None:
        if self.connected:
            try:
                self.invoke("shutdown")
            except (OSError, ConnectionError, EOFError):
                pass
            finally:
                self.connected = False
        self.started = False

    def put_notification(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._notifs.append((msg, args, kwargs))

    def get_notifications(self) -> list[tuple]:
        out = list(self._notifs)
        self._notifs.clear()
        return out

    def getdata(self, **kwargs: Any):
        from feeds.mt5 import MT5Data

        return MT5Data(store=self, **kwargs)

    def getbroker(self, **kwargs: Any):
        from brokers.mt5 import MT5Broker

        return MT5Broker(store=self, **kwargs)

    # ------------------------------------------------------------------ the connection
    @property
    def api(self) -> Any:
        """The ``MetaTrader5`` surface of the backend (imported on first use)."""
        if self._api is None:
            b = self.config.backend
            try:
                if b == "mt5":
                    import MetaTrader5

                    self._api = MetaTrader5
                else:
                    from mt5linux import MetaTrader5 as Bridge

                    self._api = Bridge(host=self.config.host, port=self.config.port)
                    self._api.execute(_PLAIN)
            except ImportError as e:
                need = "MetaTrader5 (Windows only)" if b == "mt5" else "mt5linux==1.0.11"
                raise TerminalError(f"backend {b!r} needs {need}: pip install -e '.[live]'") from e
            except (OSError, ConnectionError) as e:
                raise TerminalError(f"no mt5linux server at {self.config.host}:{self.config.port}: {e}") from e
        return self._api

    def invoke(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """One terminal function, once: over mt5linux one round trip that brings the result back as plain data."""
        if self.config.backend != "mt5linux":
            return getattr(self.api, name)(*args, **kwargs)
        from rpyc.utils.classic import obtain

        return _local(obtain(self.api.eval(f"_mtf_plain(mt5.{name}(*{args!r}, **{kwargs!r}))")))

    def connect(self) -> None:
        """initialize + login + select the symbol; back-off and retry on IPC errors."""
        for attempt in range(self.config.max_reconnect_attempts):
            if self._initialize():
                self.connected = True
                self.put_notification("CONNECTED", attempt=attempt)
                self._check_server_time()
                return
            code, msg = self._last_error()
            if code not in IPC_ERRORS:
                raise TerminalError(f"MetaTrader 5 refused the connection: {code} {self._scrub(msg)}")
            self.sleep(self._backoff(attempt))
        raise TerminalError(f"MetaTrader 5 unreachable after {self.config.max_reconnect_attempts} attempts")

    def _initialize(self) -> bool:
        c = self._creds
        kwargs: dict[str, Any] = {"timeout": self.config.timeout_ms}
        if c.login is not None:
            kwargs["login"] = c.login
        if c.password is not None:
            kwargs["password"] = c.password
        if c.server is not None:
            kwargs["server"] = c.server
        try:
            ok = self.invoke("initialize", self.config.terminal_path, **kwargs) if self.config.terminal_path else \
                self.invoke("initialize", **kwargs)
            return bool(ok) and bool(self.invoke("symbol_select", self.config.symbol, True))
        except (OSError, ConnectionError, EOFError) as e:  # the rpyc link itself
            log.warning("terminal link: %s", type(e).__name__)
            return False

    def _reconnect(self) -> None:
        self.connected = False
        self.reconnects += 1
        self.put_notification("CONNBROKEN")
        log.warning("MetaTrader 5 connection lost; reconnecting")
        self.connect()
        for callback in self.on_reconnect:
            callback()

    def _backoff(self, attempt: int) -> float:
        """Capped exponential back-off with full jitter (AWS's): spreads reconnects, bounded wait."""
        return self._rng.uniform(0.0, min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** attempt))

    def _last_error(self) -> tuple[int, str]:
        try:
            code, msg = self.invoke("last_error")
            return int(code), str(msg)
        except (OSError, ConnectionError, EOFError):
            return IPC_ERRORS[1], "no connection to the terminal"

    def _scrub(self, text: str) -> str:
        """Never echo a credential, whatever the terminal puts in its messages."""
        for secret in (self._creds.password, str(self._creds.login) if self._creds.login else None):
            if secret:
                text = text.replace(secret, "***")
        return text

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """An idempotent terminal request (a read), reconnecting and repeating it on an IPC failure. Returns the
        result, which may legitimately be empty; None only when the terminal answered an error (logged)."""
        for _ in range(self.config.max_reconnect_attempts):
            try:
                result = self.invoke(name, *args, **kwargs)
            except (OSError, ConnectionError, EOFError):
                result, code = None, IPC_ERRORS[1]
            else:
                if result is not None:
                    return result
                code, msg = self._last_error()
                if code not in IPC_ERRORS:
                    log.warning("%s: terminal error %s %s", name, code, self._scrub(msg))
                    return None
            self.ipc_errors += 1
            self._reconnect()
        raise TerminalError(f"{name}: MetaTrader 5 kept failing")

    def send(self, request: dict[str, Any]) -> tuple[Any, tuple[int, str]]:
        """``order_send`` exactly once (never repeated here: an outcome may be unknown); (result, last_error). A
        broken link is re-established afterwards so the caller can reconcile."""
        try:
            result = self.invoke("order_send", request)
        except (OSError, ConnectionError, EOFError):
            result = None
        err = (1, "Success") if result is not None else self._last_error()
        if result is None and err[0] in IPC_ERRORS:
            self.ipc_errors += 1
            try:
                self._reconnect()
            except TerminalError:
                raise
        return result, (err[0], self._scrub(err[1]))

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """UTC seconds: the simulator's virtual clock for the sim backends, else the machine's."""
        if self.config.backend == "sim":
            return float(self.api.sim_time())
        if self.config.sim_clock:
            return float(self.api.eval("mt5.sim_time()"))
        return time.time()

    def sleep(self, seconds: float) -> None:
        if self.config.backend == "sim":
            self.api.sim_sleep(seconds)
        elif self.config.sim_clock:
            self.api.eval(f"mt5.sim_sleep({float(seconds)!r})")
        else:
            time.sleep(seconds)

    def wait_for_bar(self, max_wait_s: float = 1.0) -> bool:
        """Let time pass until the next bar may have closed. For a simulator as fast as possible that is its next
        bar (False once its data are exhausted); live, at most ``max_wait_s`` seconds towards the next minute (so
        Cerebro's loop keeps delivering notifications)."""
        if self.config.backend == "sim":
            return bool(self.api.sim_advance())
        if self.config.sim_clock:
            return bool(self.api.eval("mt5.sim_advance()"))
        now = time.time()
        nxt = (math.floor(now / 60.0) + 1) * 60.0 + 1.0  # a second after the minute: the bar is closed
        time.sleep(max(0.0, min(max_wait_s, nxt - now)))
        return True

    def to_utc(self, server_seconds: int | float) -> int:
        """UTC seconds of a server-clock time (the ``time`` field of bars, ticks and deals)."""
        wall = dt.datetime.fromtimestamp(int(server_seconds), dt.UTC).replace(tzinfo=None)
        if self._zone is not None:
            return int(wall.replace(tzinfo=self._zone).timestamp())
        if self._offset_s is None:
            self._check_server_time()
        return int(server_seconds - (self._offset_s or 0.0))

    def to_server(self, utc_seconds: int | float) -> int:
        """Server-clock seconds of a UTC time (what ``copy_rates_range`` and ``history_deals_get`` expect)."""
        if self._zone is not None:
            local = dt.datetime.fromtimestamp(int(utc_seconds), self._zone)
            return int(local.replace(tzinfo=dt.UTC).timestamp())
        if self._offset_s is None:
            self._check_server_time()
        return int(utc_seconds + (self._offset_s or 0.0))

    def _check_server_time(self) -> None:
        """Estimate server - UTC from the last tick against the clock (to the half hour); warn on disagreement
        with the configured zone, use it when none is configured."""
        try:
            tick = self.invoke("symbol_info_tick", self.config.symbol)
        except (OSError, ConnectionError, EOFError):
            return
        if tick is None:
            return
        estimate = round((float(tick.time) - self.now()) / 1800.0) * 1800.0
        if self._zone is None:
            if self._offset_s is None:
                log.warning("no --server-tz: broker server time taken as UTC%+.1f h from the last tick; a DST change "
                            "will not be followed", estimate / 3600)
            self._offset_s = estimate
            return
        configured = dt.datetime.fromtimestamp(self.now(), self._zone).utcoffset().total_seconds()
        if abs(configured - estimate) >= 1800:
            log.warning("the broker's server clock looks like UTC%+.1f h from its last tick, but --server-tz %s says "
                        "UTC%+.1f h now (the tick may be stale over a weekend)", estimate / 3600,
                        self.config.server_tz, configured / 3600)
