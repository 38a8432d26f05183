"""Serve a ``TerminalSimulator`` over an rpyc classic server, so the real ``mt5linux`` client talks to it.

The mt5linux client runs ``import MetaTrader5 as mt5`` on an rpyc classic server and then evaluates code strings such
as ``mt5.order_send({...})`` there. We install a module object named ``MetaTrader5`` in ``sys.modules`` whose
attributes are the simulator's functions, its ``sim_*`` controls, the constants and the result types, and run the same
``SlaveService`` that ``python -m mt5linux`` (rpyc's classic server) runs. The store reaches the controls with
``client.eval("mt5.sim_advance()")``.

SECURITY: the classic service executes ARBITRARY code sent by any client that can connect. The server therefore binds
to a loopback address only; another host needs ``allow_remote=True`` (``--allow-remote-unsafe``), for a network you
trust completely.

Command line (credentials come from the environment, never from arguments: ``MT5_SIM_LOGIN``, ``MT5_SIM_PASSWORD``,
``MT5_SIM_SERVER``)::

    python -m stores.mt5_sim_server --sim-data ../shared/data/fx --symbol EURUSD --sim-start 2024-07-01 \
        [--sim-end 2024-07-31] [--sim-speed 60] [--sim-faults requote=0.05,disconnect=0.002] [--sim-seed 1] \
        [--port 18812] [--history-days N]
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Sequence
from typing import Any

from stores.mt5_sim import FaultSpec, TerminalSimulator, module_surface

logger = logging.getLogger(__name__)

MODULE_NAME = "MetaTrader5"
DEFAULT_PORT = 18812
"""the port mt5linux's client and server use by default"""
_MT5LINUX_PATH_ENTRY = "C:\\mt5libs"  # the mt5linux client appends this to the server's sys.path on connect


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def build_module(simulator: TerminalSimulator) -> types.ModuleType:
    """A ``MetaTrader5`` module object whose attributes are the simulator's surface."""
    module = types.ModuleType(MODULE_NAME, "MetaTrader5 surface served by the MTF-MARL terminal simulator")
    for name, value in module_surface(simulator).items():
        setattr(module, name, value)
    return module


class SimServer:
    """An rpyc classic server with the simulator installed as ``MetaTrader5``; ``close()`` restores the module
    table.

    :param simulator: the terminal to serve
    :param port: TCP port; 0 picks a free one (read it back from ``.port``)
    :param host: bind address, loopback unless ``allow_remote``
    :param allow_remote: allow a non-loopback address (the classic service runs arbitrary code: trusted networks only)
    """

    def __init__(self, simulator: TerminalSimulator, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *,
                 allow_remote: bool = False) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to serve on {host!r}: the rpyc classic service executes arbitrary code for "
                             "anyone who connects; bind to 127.0.0.1 (or pass allow_remote / --allow-remote-unsafe "
                             "on a network you trust completely)")
        from rpyc.core import SlaveService  # lazily: only the server needs rpyc
        from rpyc.utils.server import ThreadedServer

        self.simulator = simulator
        self._module = build_module(simulator)
        self._server = ThreadedServer(SlaveService, hostname=host, port=port, reuse_addr=True, auto_register=False,
                                      logger=logging.getLogger(f"{__name__}.rpyc"))
        self._saved: dict[str, Any] = {}
        self._installed = False
        self._path_had_entry = _MT5LINUX_PATH_ENTRY in sys.path
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return int(self._server.port)

    def _install(self) -> None:
        if not self._installed:
            if MODULE_NAME in sys.modules:
                self._saved[MODULE_NAME] = sys.modules[MODULE_NAME]
            sys.modules[MODULE_NAME] = self._module
            self._installed = True

    def serve_forever(self) -> None:
        """Serve until ``close()`` (blocks)."""
        self._install()
        logger.info("terminal simulator for %s listening on %s:%d", self.simulator, self.host, self.port)
        self._server.start()

    def start_in_thread(self, timeout: float = 10.0) -> SimServer:
        """Serve from a daemon thread; returns self once the server listens (a client may connect at once)."""
        self._install()
        self._thread = threading.Thread(target=self._server.start, name="mt5-sim-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.active:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the simulator's rpyc server did not start listening on {self.host}:{self.port}")
            time.sleep(0.005)
        return self

    def close(self) -> None:
        """Stop serving and put back whatever ``MetaTrader5`` module was there before."""
        self._server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._installed:
            if sys.modules.get(MODULE_NAME) is self._module:
                if MODULE_NAME in self._saved:
                    sys.modules[MODULE_NAME] = self._saved[MODULE_NAME]
                else:
                    del sys.modules[MODULE_NAME]
            self._installed = False
        if not self._path_had_entry:
            while _MT5LINUX_PATH_ENTRY in sys.path:
                sys.path.remove(_MT5LINUX_PATH_ENTRY)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(simulator: TerminalSimulator, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *,
          allow_remote: bool = False, block: bool = True) -> SimServer:
    """Serve ``simulator`` as ``MetaTrader5`` over rpyc classic on ``host:port``.

    :param block: True serves until the server is closed (then returns it); False serves from a daemon thread and
        returns the running server at once (call ``close()`` on it)
    """
    server = SimServer(simulator, port, host, allow_remote=allow_remote)
    if block:
        try:
            server.serve_forever()
        finally:
            server.close()
        return server
    return server.start_in_thread()


# ----------------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stores.mt5_sim_server", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim-data", required=True, help="M1 bar file or folder (feeds.loaders.load_bars)")
    p.add_argument("--symbol", default="EURUSD", help="the one symbol the terminal trades")
    p.add_argument("--sim-start", required=True, help="first live bar (UTC date or timestamp)")
    p.add_argument("--sim-end", default=None, help="last bar (a date includes that whole day); default: all data")
    p.add_argument("--sim-speed", type=float, default=0.0,
                   help="virtual seconds per wall second; 0 = the client drives the clock with mt5.sim_advance()")
    p.add_argument("--sim-faults", default="none", help="fault rates, e.g. requote=0.05,disconnect=0.002")
    p.add_argument("--sim-seed", type=int, default=None, help="seed of the fault streams")
    p.add_argument("--cash", type=float, default=100_000.0, help="initial balance (USD)")
    p.add_argument("--leverage", type=float, default=30.0, help="account leverage")
    p.add_argument("--server-tz", default="Europe/Athens", help="server clock: IANA zone or offset like +02:00")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only unless --allow-remote-unsafe)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    p.add_argument("--history-days", type=int, default=None,
                   help="calendar days of history before --sim-start (default: features.context.HISTORY_DAYS)")
    p.add_argument("--allow-remote-unsafe", action="store_true",
                   help="allow a non-loopback --host: anyone who can connect can run any code on this machine")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Load the bars, build the simulator and serve it until interrupted; bad input is one clear line."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from features.context import HISTORY_DAYS, history_start  # lazily: pulls in the feature engine (TA-Lib)
    from feeds.errors import DataError
    from feeds.loaders import load_bars

    try:
        faults = FaultSpec.parse(args.sim_faults)  # a bad spec fails before a year of bars is read
        if not args.allow_remote_unsafe and not is_loopback(args.host):
            raise ValueError(f"refusing --host {args.host}: the rpyc classic service executes arbitrary code for "
                             "anyone who connects (pass --allow-remote-unsafe only on a network you trust)")
        days = HISTORY_DAYS if args.history_days is None else args.history_days
        bars = load_bars(args.sim_data, symbol=args.symbol, start=history_start(args.sim_start, days),
                         end=args.sim_end)
        login = os.environ.get("MT5_SIM_LOGIN")
        sim = TerminalSimulator(bars=bars, symbol=args.symbol, start=args.sim_start, end=args.sim_end,
                                speed=args.sim_speed, faults=faults, seed=args.sim_seed, cash=args.cash,
                                leverage=args.leverage, server_tz=args.server_tz,
                                login=int(login) if login else 10_000_001,
                                password=os.environ.get("MT5_SIM_PASSWORD"),
                                server=os.environ.get("MT5_SIM_SERVER", "MTF-Simulator"))
        server = SimServer(sim, args.port, args.host, allow_remote=args.allow_remote_unsafe)
    except (ValueError, DataError, OSError, KeyError) as exc:
        parser.error(str(exc))
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
