"""A MetaTrader 5 terminal simulator: the ``MetaTrader5`` module surface a live adapter uses, over historical M1 bid
bars of one symbol and over our broker simulation (``brokers.sim.ForexSim``), with seeded faults.

Users paper-test with it; our tests use it to prove the live MT5 adapter under faults, in process or through the real
``mt5linux`` client (``stores.mt5_sim_server``). A simulated account has our spreads, commission, swap, margin and
stop-out, and a run through it fills exactly like a backtest over the same bars.

Where the names and numbers come from
-------------------------------------
- Constants: the ``metatrader5-stubs`` 0.1.3 ``__init__.pyi`` (MetaTrader5 5.0.5735) first, ``mt5linux`` 1.0.11
  ``constants.py`` second (a test checks every shared value against both). ``SYMBOL_FILLING_FOK`` (1),
  ``SYMBOL_FILLING_IOC`` (2) and ``SYMBOL_FILLING_BOC`` (4) are in neither: they come from the MQL5 reference, "Symbol
  Properties" (``SYMBOL_FILLING_MODE`` is a bit mask of them; the Python module may not export the names).
- ``TradeRequest`` (the stubs' TypedDict keys, in order), ``OrderSendResult``, ``TradePosition``, ``TradeOrder``,
  ``Tick``, ``TerminalInfo``: field names and order from the stubs.
- ``AccountInfo``, ``SymbolInfo``, ``TradeDeal``, ``OrderCheckResult``: not in the stubs; field names and order from
  the official Python integration docs (mql5.com "account_info", "symbol_info", "history_deals_get", "order_check"),
  as reproduced in the ``mt5linux`` 1.0.11 docstrings (the ``_asdict()`` listings); a test parses them from there.
- Trade server return codes and their meaning: MQL5 reference "Trade Server Return Codes"; ``last_error`` codes: the
  stubs and the Python docs' ``last_error`` table. The descriptions we return follow what the real module prints:
  ``(1, 'Success')``, ``(-10004, 'No IPC connection')``, ``(-10005, 'IPC timeout')``,
  ``(-10003, 'IPC initialize failed, ...')``, ``(-6, 'Terminal: Authorization failed')``. Position identity on a
  netting account (the identifier survives a reversal, the ticket becomes the reversing order's): MQL5 reference
  "Position Properties".

The clock (this is what makes a live run equal to a backtest)
--------------------------------------------------------------
Virtual UTC time, in seconds. At construction it stands at the open of the ``start`` bar: every earlier bar is closed
history, the ``start`` bar is forming. A bar is *closed* once the clock reaches its open + 60 s; it *exists* (can be
read) once the clock reaches its open. With ``speed == 0`` time moves only when the adapter asks: ``sim_advance()``
jumps to the open of the next bar after the forming one (straight across a weekend or a data hole, so there is never
a moment with an order in flight and no market) and ``sim_sleep(s)`` adds ``s`` seconds (reconnect back-off). With
``speed > 0`` virtual time = start open + wall seconds elapsed x speed; ``sim_sleep`` really sleeps ``s / speed``
and ``sim_advance`` sleeps until the next bar's open. After the last bar (or ``end``) ``sim_advance`` closes it, then
returns False: the data are exhausted, and every reading function keeps answering with what exists.
``sim_advance``, ``sim_sleep``, ``sim_time`` (virtual UTC, float seconds) and ``sim_stats`` are NOT part of
MetaTrader5: the store calls them only for the simulator backend (in process, or over rpyc with the mt5linux client's
``.eval("mt5.sim_advance()")``); they work while the connection is down (they are the harness, not the terminal).

Lazy processing, in the backtest's order of events. On every call, the bars that have closed by the clock go through
the ForexSim in time order (``open_bar`` then ``close_bar``; the broker's stop-loss, take-profit and stop-out fills
happen there and become deals). The forming bar's ``open_bar`` runs only when an order is sent during it (then
``execute_pending`` fills that order at the forming bar's open: a buy at the ask = bid open + spread, a sell at the bid
open, exactly where a backtest fills an order decided on the previous bar) or when it closes. So account state read
while a bar forms (``account_info``, ``positions_get``) is the state after the previous bar's close, as a backtest
strategy sees it when it decides; once an order has been sent in the bar, positions are marked at the forming open
(the current tick). A rollover swap is charged when the first bar after it opens.

Rates. ``copy_rates_from_pos`` position 0 is the newest existing bar (the forming one whenever a bar is forming), 1
the one before, and so on; every ``copy_rates_*`` returns bars oldest first, as MT5 does, with the real dtype
(``time`` int64, ``open``/``high``/``low``/``close`` float64, ``tick_volume`` uint64, ``spread`` int32 points,
``real_volume`` uint64). The forming bar is delivered with partial values (open = high = low = close = its open,
tick_volume 1), never its final ones, so an adapter that wrongly uses bar 0 is caught by value mismatches. Closed bars
carry tick_volume = the data's volume, at least 1 (our data have none). ``time`` is the bar's open on the SERVER wall
clock written as if it were UTC (as MT5 does; ``server_tz``, default Europe/Athens = EET/EEST). One request returns
at most ``MAX_BARS`` = 100,000 bars, the default "Max. bars in chart" of a terminal, so an adapter must paginate:
``copy_rates_from_pos`` and ``copy_rates_from`` keep the newest end of what was asked (their anchor),
``copy_rates_range`` keeps the oldest (its anchor ``date_from``), so paging forward from the last time returned works.
Only ``TIMEFRAME_M1`` is simulated: any other timeframe returns None with ``RES_E_INVALID_PARAMS``.

Date arguments (``copy_rates_from/_range``, ``history_*``) are compared with ``time`` fields on the server clock:
- an int or float is server-clock seconds, as MT5 returns them in ``time`` fields;
- an aware datetime counts by its epoch value (``dt.timestamp()``), like the real module, so ``datetime(2024, 7, 1,
  10, tzinfo=UTC)`` means 10:00 *server* time; mt5linux sends ``repr(date.astimezone())``, which keeps that value;
- a naive datetime is read as a server wall-clock time (as if tzinfo=UTC). The real module would read it in the local
  zone of the Python process; we refuse to depend on the machine's zone. Through mt5linux a naive datetime becomes the
  client's local time first, which is the same thing on a UTC machine.

Trading (netting account, one position per symbol)
--------------------------------------------------
``order_send``/``order_check`` take the real ``TradeRequest`` keys. ``TRADE_ACTION_DEAL`` (market order; ``price``
and ``deviation`` are ignored, as for market execution) and ``TRADE_ACTION_SLTP`` (modify the position's sl/tp) are
supported; other actions get ``TRADE_RETCODE_INVALID``. Comments are cut to 31 characters as MT5 does. ``type_filling``
must be allowed by ``symbol_info().filling_mode`` (default IOC only) else ``TRADE_RETCODE_INVALID_FILL``; volume
errors give ``INVALID_VOLUME``, margin refused by the ForexSim ``NO_MONEY``, bad stops ``INVALID_STOPS``. sl/tp on a
deal replace both levels of the resulting position (ForexSim's rule); 0 means none. Every ForexSim fill becomes a
``TradeDeal`` (reason ``DEAL_REASON_EXPERT`` for our orders; ``DEAL_REASON_SL`` / ``_TP`` / ``_SO`` with MT5-style
comments ``[sl 1.08500]``, ``[tp ...]``, ``[so 48.20%, 482.00/1000.00]`` for the broker's, which also get a history
order and carry the position's magic). Order tickets start at 100,000,001 and deal tickets at 50,000,001, so mixing
them up is caught. The account starts with one ``DEAL_TYPE_BALANCE`` deposit deal.

Faults (``FaultSpec``, seeded)
------------------------------
Per request (each ``order_send`` that reaches the server draws three uniforms from its own stream, whatever the
outcome, so the sequence does not depend on the adapter's reads): one fault kind at most, with probability exactly
its rate (the rates of the per-request kinds are disjoint slices of [0, 1]). ``too_many_requests`` and
``market_closed`` refuse the request up front; ``requote`` returns fresh bid/ask and executes nothing; ``partial``
(IOC requests of at least two volume steps only) executes 1 .. n-1 steps and returns ``DONE_PARTIAL``;
``timeout_executed`` EXECUTES the request but the caller gets, with equal chance, a ``TRADE_RETCODE_TIMEOUT`` result
(no deal or order ticket) or ``None`` with last_error ``(-10005, 'IPC timeout')``. Requote and partial apply to deals
only. Per bar (drawn from a second stream when a bar closes): ``disconnect`` drops the IPC connection at that bar's
close for a uniform ``disconnect_min_s`` .. ``disconnect_max_s`` (default 30 .. 600) virtual seconds (bars that close
while it is down draw too, but cannot start another: ``sim_stats()["bars_while_up"]`` counts the chances). While it is
down every API call returns None (False for ``initialize``/``login``/``symbol_select``) with last_error ``(-10004,
'No IPC connection')``, and ``initialize()`` fails with ``(-10003, 'IPC initialize failed')``; once it is over the
connection stays lost until ``initialize()`` succeeds (a reconnect). The market goes on meanwhile: bars keep closing
(``sim_sleep``/``sim_advance``), brackets and stop-outs fire, and no bar is lost for the backfill. ``sim_stats()``
counts every injected fault.

Simplified compared with a real terminal
----------------------------------------
One symbol, M1 only, no ticks (``copy_ticks_*`` and market book are absent), no pending orders (``orders_get`` is
always empty), market execution at the bar open only (no intrabar price for an order, ``deviation`` unused), no stops
or freeze levels beyond "sl below / tp above the price", no margin call (``margin_so_call`` is informational; the stop
out at ``margin_so_so`` = ForexSim's 50 % is real). Swap is booked to the balance at each rollover (our broker core's
convention), where a real MT5 keeps it on the position until it closes: positions and deals report ``swap`` 0 and
balance already holds it. Unknown symbols give ``(-4, 'Terminal: Not found')``; every data function returns None
(not 0) while disconnected, ``*_total`` included, so a lost connection is never read as "no positions". Empty
results are empty tuples / arrays. ``order_send`` between bars (a gap reached by ``sim_sleep``, or after the data)
gets ``TRADE_RETCODE_MARKET_CLOSED`` (counted as ``market_closed_no_bar``, not as a fault).
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import functools
import hashlib
import hmac
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from brokers.instruments import Instrument, get_instrument
from brokers.sim import Fill, ForexSim, Rejection
from feeds.loaders import to_utc

logger = logging.getLogger(__name__)

MAX_BARS = 100_000
"""bars one copy_rates_* request returns at most: a terminal's default "Max. bars in chart" (terminal_info.maxbars)"""
COMMENT_LENGTH = 31
"""MT5 keeps the first 31 characters of an order comment"""
SIM_BUILD = 5000
"""terminal build the simulator reports (version(), terminal_info().build)"""
_FIRST_ORDER_TICKET = 100_000_001
_FIRST_DEAL_TICKET = 50_000_001


# --------------------------------------------------------------------------------------------------- constants


class MT5Constants:
    """The ``MetaTrader5`` module's constants, with the real values (sources in the module docstring)."""

    TIMEFRAME_M1 = 1
    TIMEFRAME_M2 = 2
    TIMEFRAME_M3 = 3
    TIMEFRAME_M4 = 4
    TIMEFRAME_M5 = 5
    TIMEFRAME_M6 = 6
    TIMEFRAME_M10 = 10
    TIMEFRAME_M12 = 12
    TIMEFRAME_M15 = 15
    TIMEFRAME_M20 = 20
    TIMEFRAME_M30 = 30
    TIMEFRAME_H1 = 1 | 0x4000
    TIMEFRAME_H2 = 2 | 0x4000
    TIMEFRAME_H3 = 3 | 0x4000
    TIMEFRAME_H4 = 4 | 0x4000
    TIMEFRAME_H6 = 6 | 0x4000
    TIMEFRAME_H8 = 8 | 0x4000
    TIMEFRAME_H12 = 12 | 0x4000
    TIMEFRAME_D1 = 24 | 0x4000
    TIMEFRAME_W1 = 1 | 0x8000
    TIMEFRAME_MN1 = 1 | 0xC000

    COPY_TICKS_ALL = -1
    COPY_TICKS_INFO = 1
    COPY_TICKS_TRADE = 2

    TICK_FLAG_BID = 0x02
    TICK_FLAG_ASK = 0x04
    TICK_FLAG_LAST = 0x08
    TICK_FLAG_VOLUME = 0x10
    TICK_FLAG_BUY = 0x20
    TICK_FLAG_SELL = 0x40

    POSITION_TYPE_BUY = 0
    POSITION_TYPE_SELL = 1
    POSITION_REASON_CLIENT = 0
    POSITION_REASON_MOBILE = 1
    POSITION_REASON_WEB = 2
    POSITION_REASON_EXPERT = 3

    ORDER_TYPE_BUY = 0
    ORDER_TYPE_SELL = 1
    ORDER_TYPE_BUY_LIMIT = 2
    ORDER_TYPE_SELL_LIMIT = 3
    ORDER_TYPE_BUY_STOP = 4
    ORDER_TYPE_SELL_STOP = 5
    ORDER_TYPE_BUY_STOP_LIMIT = 6
    ORDER_TYPE_SELL_STOP_LIMIT = 7
    ORDER_TYPE_CLOSE_BY = 8

    ORDER_STATE_STARTED = 0
    ORDER_STATE_PLACED = 1
    ORDER_STATE_CANCELED = 2
    ORDER_STATE_PARTIAL = 3
    ORDER_STATE_FILLED = 4
    ORDER_STATE_REJECTED = 5
    ORDER_STATE_EXPIRED = 6
    ORDER_STATE_REQUEST_ADD = 7
    ORDER_STATE_REQUEST_MODIFY = 8
    ORDER_STATE_REQUEST_CANCEL = 9

    ORDER_FILLING_FOK = 0
    ORDER_FILLING_IOC = 1
    ORDER_FILLING_RETURN = 2
    ORDER_FILLING_BOC = 3

    ORDER_TIME_GTC = 0
    ORDER_TIME_DAY = 1
    ORDER_TIME_SPECIFIED = 2
    ORDER_TIME_SPECIFIED_DAY = 3

    ORDER_REASON_CLIENT = 0
    ORDER_REASON_MOBILE = 1
    ORDER_REASON_WEB = 2
    ORDER_REASON_EXPERT = 3
    ORDER_REASON_SL = 4
    ORDER_REASON_TP = 5
    ORDER_REASON_SO = 6

    DEAL_TYPE_BUY = 0
    DEAL_TYPE_SELL = 1
    DEAL_TYPE_BALANCE = 2
    DEAL_TYPE_CREDIT = 3
    DEAL_TYPE_CHARGE = 4
    DEAL_TYPE_CORRECTION = 5
    DEAL_TYPE_BONUS = 6
    DEAL_TYPE_COMMISSION = 7
    DEAL_TYPE_COMMISSION_DAILY = 8
    DEAL_TYPE_COMMISSION_MONTHLY = 9
    DEAL_TYPE_COMMISSION_AGENT_DAILY = 10
    DEAL_TYPE_COMMISSION_AGENT_MONTHLY = 11
    DEAL_TYPE_INTEREST = 12
    DEAL_TYPE_BUY_CANCELED = 13
    DEAL_TYPE_SELL_CANCELED = 14
    DEAL_DIVIDEND = 15
    DEAL_DIVIDEND_FRANKED = 16
    DEAL_TAX = 17

    DEAL_ENTRY_IN = 0
    DEAL_ENTRY_OUT = 1
    DEAL_ENTRY_INOUT = 2
    DEAL_ENTRY_OUT_BY = 3

    DEAL_REASON_CLIENT = 0
    DEAL_REASON_MOBILE = 1
    DEAL_REASON_WEB = 2
    DEAL_REASON_EXPERT = 3
    DEAL_REASON_SL = 4
    DEAL_REASON_TP = 5
    DEAL_REASON_SO = 6
    DEAL_REASON_ROLLOVER = 7
    DEAL_REASON_VMARGIN = 8
    DEAL_REASON_SPLIT = 9

    TRADE_ACTION_DEAL = 1
    TRADE_ACTION_PENDING = 5
    TRADE_ACTION_SLTP = 6
    TRADE_ACTION_MODIFY = 7
    TRADE_ACTION_REMOVE = 8
    TRADE_ACTION_CLOSE_BY = 10

    SYMBOL_CHART_MODE_BID = 0
    SYMBOL_CHART_MODE_LAST = 1
    SYMBOL_CALC_MODE_FOREX = 0
    SYMBOL_CALC_MODE_FUTURES = 1
    SYMBOL_CALC_MODE_CFD = 2
    SYMBOL_CALC_MODE_CFDINDEX = 3
    SYMBOL_CALC_MODE_CFDLEVERAGE = 4
    SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE = 5
    SYMBOL_CALC_MODE_EXCH_STOCKS = 32
    SYMBOL_CALC_MODE_EXCH_FUTURES = 33
    SYMBOL_CALC_MODE_EXCH_OPTIONS = 34
    SYMBOL_CALC_MODE_EXCH_OPTIONS_MARGIN = 36
    SYMBOL_CALC_MODE_EXCH_BONDS = 37
    SYMBOL_CALC_MODE_EXCH_STOCKS_MOEX = 38
    SYMBOL_CALC_MODE_EXCH_BONDS_MOEX = 39
    SYMBOL_CALC_MODE_SERV_COLLATERAL = 64
    SYMBOL_TRADE_MODE_DISABLED = 0
    SYMBOL_TRADE_MODE_LONGONLY = 1
    SYMBOL_TRADE_MODE_SHORTONLY = 2
    SYMBOL_TRADE_MODE_CLOSEONLY = 3
    SYMBOL_TRADE_MODE_FULL = 4
    SYMBOL_TRADE_EXECUTION_REQUEST = 0
    SYMBOL_TRADE_EXECUTION_INSTANT = 1
    SYMBOL_TRADE_EXECUTION_MARKET = 2
    SYMBOL_TRADE_EXECUTION_EXCHANGE = 3
    SYMBOL_SWAP_MODE_DISABLED = 0
    SYMBOL_SWAP_MODE_POINTS = 1
    SYMBOL_SWAP_MODE_CURRENCY_SYMBOL = 2
    SYMBOL_SWAP_MODE_CURRENCY_MARGIN = 3
    SYMBOL_SWAP_MODE_CURRENCY_DEPOSIT = 4
    SYMBOL_SWAP_MODE_INTEREST_CURRENT = 5
    SYMBOL_SWAP_MODE_INTEREST_OPEN = 6
    SYMBOL_SWAP_MODE_REOPEN_CURRENT = 7
    SYMBOL_SWAP_MODE_REOPEN_BID = 8
    SYMBOL_OPTION_RIGHT_CALL = 0
    SYMBOL_OPTION_RIGHT_PUT = 1
    SYMBOL_OPTION_MODE_EUROPEAN = 0
    SYMBOL_OPTION_MODE_AMERICAN = 1
    SYMBOL_ORDERS_GTC = 0
    SYMBOL_ORDERS_DAILY = 1
    SYMBOL_ORDERS_DAILY_NO_STOPS = 2
    SYMBOL_FILLING_FOK = 1  # MQL5 reference "Symbol Properties": SYMBOL_FILLING_MODE flags
    SYMBOL_FILLING_IOC = 2
    SYMBOL_FILLING_BOC = 4

    DAY_OF_WEEK_SUNDAY = 0
    DAY_OF_WEEK_MONDAY = 1
    DAY_OF_WEEK_TUESDAY = 2
    DAY_OF_WEEK_WEDNESDAY = 3
    DAY_OF_WEEK_THURSDAY = 4
    DAY_OF_WEEK_FRIDAY = 5
    DAY_OF_WEEK_SATURDAY = 6

    ACCOUNT_TRADE_MODE_DEMO = 0
    ACCOUNT_TRADE_MODE_CONTEST = 1
    ACCOUNT_TRADE_MODE_REAL = 2
    ACCOUNT_STOPOUT_MODE_PERCENT = 0
    ACCOUNT_STOPOUT_MODE_MONEY = 1
    ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
    ACCOUNT_MARGIN_MODE_EXCHANGE = 1
    ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2

    BOOK_TYPE_SELL = 1
    BOOK_TYPE_BUY = 2
    BOOK_TYPE_SELL_MARKET = 3
    BOOK_TYPE_BUY_MARKET = 4

    TRADE_RETCODE_REQUOTE = 10004
    TRADE_RETCODE_REJECT = 10006
    TRADE_RETCODE_CANCEL = 10007
    TRADE_RETCODE_PLACED = 10008
    TRADE_RETCODE_DONE = 10009
    TRADE_RETCODE_DONE_PARTIAL = 10010
    TRADE_RETCODE_ERROR = 10011
    TRADE_RETCODE_TIMEOUT = 10012
    TRADE_RETCODE_INVALID = 10013
    TRADE_RETCODE_INVALID_VOLUME = 10014
    TRADE_RETCODE_INVALID_PRICE = 10015
    TRADE_RETCODE_INVALID_STOPS = 10016
    TRADE_RETCODE_TRADE_DISABLED = 10017
    TRADE_RETCODE_MARKET_CLOSED = 10018
    TRADE_RETCODE_NO_MONEY = 10019
    TRADE_RETCODE_PRICE_CHANGED = 10020
    TRADE_RETCODE_PRICE_OFF = 10021
    TRADE_RETCODE_INVALID_EXPIRATION = 10022
    TRADE_RETCODE_ORDER_CHANGED = 10023
    TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
    TRADE_RETCODE_NO_CHANGES = 10025
    TRADE_RETCODE_SERVER_DISABLES_AT = 10026
    TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
    TRADE_RETCODE_LOCKED = 10028
    TRADE_RETCODE_FROZEN = 10029
    TRADE_RETCODE_INVALID_FILL = 10030
    TRADE_RETCODE_CONNECTION = 10031
    TRADE_RETCODE_ONLY_REAL = 10032
    TRADE_RETCODE_LIMIT_ORDERS = 10033
    TRADE_RETCODE_LIMIT_VOLUME = 10034
    TRADE_RETCODE_INVALID_ORDER = 10035
    TRADE_RETCODE_POSITION_CLOSED = 10036
    TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
    TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
    TRADE_RETCODE_LIMIT_POSITIONS = 10040
    TRADE_RETCODE_REJECT_CANCEL = 10041
    TRADE_RETCODE_LONG_ONLY = 10042
    TRADE_RETCODE_SHORT_ONLY = 10043
    TRADE_RETCODE_CLOSE_ONLY = 10044
    TRADE_RETCODE_FIFO_CLOSE = 10045
    TRADE_RETCODE_HEDGE_PROHIBITED = 10046  # mt5linux constants (not in the stubs)

    RES_S_OK = 1
    RES_E_FAIL = -1
    RES_E_INVALID_PARAMS = -2
    RES_E_NO_MEMORY = -3
    RES_E_NOT_FOUND = -4
    RES_E_INVALID_VERSION = -5
    RES_E_AUTH_FAILED = -6
    RES_E_UNSUPPORTED = -7
    RES_E_AUTO_TRADING_DISABLED = -8
    RES_E_INTERNAL_FAIL = -10000
    RES_E_INTERNAL_FAIL_SEND = -10001
    RES_E_INTERNAL_FAIL_RECEIVE = -10002
    RES_E_INTERNAL_FAIL_INIT = -10003
    RES_E_INTERNAL_FAIL_CONNECT = -10004
    RES_E_INTERNAL_FAIL_TIMEOUT = -10005


C = MT5Constants


def mt5_constants() -> dict[str, int]:
    """Every constant the simulator defines, by name (what the served ``MetaTrader5`` module carries)."""
    return {k: v for k, v in vars(MT5Constants).items() if k.isupper() and isinstance(v, int)}


_OK = (C.RES_S_OK, "Success")
_NO_IPC = (C.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
_IPC_TIMEOUT = (C.RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
_IPC_INIT = (C.RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed, the terminal does not respond")
_AUTH_FAILED = (C.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
_NOT_FOUND = (C.RES_E_NOT_FOUND, "Terminal: Not found")


# ----------------------------------------------------------------------------------------------- result types


class TradeRequest(NamedTuple):
    """MqlTradeRequest as the module returns it inside results (the stubs' TradeRequest keys, in order)."""

    action: int = 0
    magic: int = 0
    order: int = 0
    symbol: str = ""
    volume: float = 0.0
    price: float = 0.0
    stoplimit: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    deviation: int = 0
    type: int = 0
    type_filling: int = 0
    type_time: int = 0
    expiration: int = 0
    comment: str = ""
    position: int = 0
    position_by: int = 0


class OrderSendResult(NamedTuple):
    retcode: int
    deal: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    retcode_external: int
    request: TradeRequest


class OrderCheckResult(NamedTuple):
    retcode: int
    balance: float
    equity: float
    profit: float
    margin: float
    margin_free: float
    margin_level: float
    comment: str
    request: TradeRequest


class TradePosition(NamedTuple):
    ticket: int
    time: int
    time_msc: int
    time_update: int
    time_update_msc: int
    type: int
    magic: int
    identifier: int
    reason: int
    volume: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str
    external_id: str


class TradeOrder(NamedTuple):
    ticket: int
    time_setup: int
    time_setup_msc: int
    time_done: int
    time_done_msc: int
    time_expiration: int
    type: int
    type_time: int
    type_filling: int
    state: int
    magic: int
    position_id: int
    position_by_id: int
    reason: int
    volume_initial: float
    volume_current: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    price_stoplimit: float
    symbol: str
    comment: str
    external_id: str


class TradeDeal(NamedTuple):
    ticket: int
    order: int
    time: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str


class Tick(NamedTuple):
    time: int
    bid: float
    ask: float
    last: float
    volume: int
    time_msc: int
    flags: int
    volume_real: float


class TerminalInfo(NamedTuple):
    community_account: bool
    community_connection: bool
    connected: bool
    dlls_allowed: bool
    trade_allowed: bool
    tradeapi_disabled: bool
    email_enabled: bool
    ftp_enabled: bool
    notifications_enabled: bool
    mqid: bool
    build: int
    maxbars: int
    codepage: int
    ping_last: int
    community_balance: float
    retransmission: float
    company: str
    name: str
    language: str
    path: str
    data_path: str
    commondata_path: str


class AccountInfo(NamedTuple):
    login: int
    trade_mode: int
    leverage: int
    limit_orders: int
    margin_so_mode: int
    trade_allowed: bool
    trade_expert: bool
    margin_mode: int
    currency_digits: int
    fifo_close: bool
    balance: float
    credit: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    margin_so_call: float
    margin_so_so: float
    margin_initial: float
    margin_maintenance: float
    assets: float
    liabilities: float
    commission_blocked: float
    name: str
    server: str
    currency: str
    company: str


class SymbolInfo(NamedTuple):
    custom: bool = False
    chart_mode: int = 0
    select: bool = False
    visible: bool = False
    session_deals: int = 0
    session_buy_orders: int = 0
    session_sell_orders: int = 0
    volume: int = 0
    volumehigh: int = 0
    volumelow: int = 0
    time: int = 0
    digits: int = 0
    spread: int = 0
    spread_float: bool = False
    ticks_bookdepth: int = 0
    trade_calc_mode: int = 0
    trade_mode: int = 0
    start_time: int = 0
    expiration_time: int = 0
    trade_stops_level: int = 0
    trade_freeze_level: int = 0
    trade_exemode: int = 0
    swap_mode: int = 0
    swap_rollover3days: int = 0
    margin_hedged_use_leg: bool = False
    expiration_mode: int = 0
    filling_mode: int = 0
    order_mode: int = 0
    order_gtc_mode: int = 0
    option_mode: int = 0
    option_right: int = 0
    bid: float = 0.0
    bidhigh: float = 0.0
    bidlow: float = 0.0
    ask: float = 0.0
    askhigh: float = 0.0
    asklow: float = 0.0
    last: float = 0.0
    lasthigh: float = 0.0
    lastlow: float = 0.0
    volume_real: float = 0.0
    volumehigh_real: float = 0.0
    volumelow_real: float = 0.0
    option_strike: float = 0.0
    point: float = 0.0
    trade_tick_value: float = 0.0
    trade_tick_value_profit: float = 0.0
    trade_tick_value_loss: float = 0.0
    trade_tick_size: float = 0.0
    trade_contract_size: float = 0.0
    trade_accrued_interest: float = 0.0
    trade_face_value: float = 0.0
    trade_liquidity_rate: float = 0.0
    volume_min: float = 0.0
    volume_max: float = 0.0
    volume_step: float = 0.0
    volume_limit: float = 0.0
    swap_long: float = 0.0
    swap_short: float = 0.0
    margin_initial: float = 0.0
    margin_maintenance: float = 0.0
    session_volume: float = 0.0
    session_turnover: float = 0.0
    session_interest: float = 0.0
    session_buy_orders_volume: float = 0.0
    session_sell_orders_volume: float = 0.0
    session_open: float = 0.0
    session_close: float = 0.0
    session_aw: float = 0.0
    session_price_settlement: float = 0.0
    session_price_limit_min: float = 0.0
    session_price_limit_max: float = 0.0
    margin_hedged: float = 0.0
    price_change: float = 0.0
    price_volatility: float = 0.0
    price_theoretical: float = 0.0
    price_greeks_delta: float = 0.0
    price_greeks_theta: float = 0.0
    price_greeks_gamma: float = 0.0
    price_greeks_vega: float = 0.0
    price_greeks_rho: float = 0.0
    price_greeks_omega: float = 0.0
    price_sensitivity: float = 0.0
    basis: str = ""
    category: str = ""
    currency_base: str = ""
    currency_profit: str = ""
    currency_margin: str = ""
    bank: str = ""
    description: str = ""
    exchange: str = ""
    formula: str = ""
    isin: str = ""
    name: str = ""
    page: str = ""
    path: str = ""


RESULT_TYPES: tuple[type, ...] = (TradeRequest, OrderSendResult, OrderCheckResult, TradePosition, TradeOrder,
                                  TradeDeal, Tick, TerminalInfo, AccountInfo, SymbolInfo)

RATES_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                        ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])
"""the numpy dtype of the real module's copy_rates_* arrays"""

API_FUNCTIONS: tuple[str, ...] = (
    "initialize", "login", "shutdown", "version", "last_error", "account_info", "terminal_info",
    "symbols_total", "symbols_get", "symbol_info", "symbol_info_tick", "symbol_select",
    "copy_rates_from", "copy_rates_from_pos", "copy_rates_range",
    "orders_total", "orders_get", "order_calc_margin", "order_calc_profit", "order_check", "order_send",
    "positions_total", "positions_get", "history_orders_total", "history_orders_get",
    "history_deals_total", "history_deals_get",
)
"""the MetaTrader5 functions the simulator implements, with the real names"""
SIM_FUNCTIONS: tuple[str, ...] = ("sim_advance", "sim_sleep", "sim_time", "sim_stats")
"""simulator-only controls (not MetaTrader5): the store calls them only for the sim backend, over rpyc with
``client.eval("mt5.sim_advance()")``"""


# ------------------------------------------------------------------------------------------------------ faults

RequestFault = Literal["too_many_requests", "market_closed", "requote", "partial", "timeout_executed"]
REQUEST_FAULTS: tuple[RequestFault, ...] = ("too_many_requests", "market_closed", "requote", "partial",
                                            "timeout_executed")
"""per-request kinds, in the order their slices of [0, 1] are laid out"""
BAR_FAULTS: tuple[str, ...] = ("disconnect",)


@dataclass(frozen=True)
class FaultSpec:
    """Seeded fault rates: per ``order_send`` request (``requote``, ``timeout_executed``, ``partial``,
    ``market_closed``, ``too_many_requests``; disjoint, so their sum is at most 1) and per closed bar
    (``disconnect``, lasting ``disconnect_min_s`` .. ``disconnect_max_s`` virtual seconds, uniform).

    Parsed from ``"requote=0.05,disconnect=0.002,..."``; ``"none"`` (or ``""``) means no faults.
    """

    requote: float = 0.0
    timeout_executed: float = 0.0
    partial: float = 0.0
    market_closed: float = 0.0
    too_many_requests: float = 0.0
    disconnect: float = 0.0
    disconnect_min_s: float = 30.0
    disconnect_max_s: float = 600.0

    def __post_init__(self) -> None:
        for key in (*REQUEST_FAULTS, *BAR_FAULTS):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):  # also refuses NaN
                raise ValueError(f"fault {key}={value!r}: a probability must be in [0, 1]")
        total = sum(getattr(self, k) for k in REQUEST_FAULTS)
        if total > 1.0 + 1e-12:
            raise ValueError(f"per-request fault rates ({', '.join(REQUEST_FAULTS)}) are exclusive and must sum to "
                             f"at most 1, got {total}")
        lo, hi = self.disconnect_min_s, self.disconnect_max_s
        if not (isinstance(lo, int | float) and isinstance(hi, int | float) and 0.0 < lo <= hi < math.inf):
            raise ValueError(f"fault disconnect_min_s={lo!r}, disconnect_max_s={hi!r}: need 0 < min <= max")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``"requote=0.05,disconnect=0.002"`` -> FaultSpec; unknown keys and bad values raise ValueError naming
        the key."""
        text = text.strip()
        if text.lower() in ("", "none"):
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"fault spec item {part.strip()!r} is not key=value")
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(known))}")
            if key in values:
                raise ValueError(f"fault {key!r} is given twice")
            try:
                values[key] = float(raw)
            except ValueError as exc:
                raise ValueError(f"fault {key}={raw.strip()!r} is not a number") from exc
        return cls(**values)

    @classmethod
    def coerce(cls, spec: FaultSpec | str | None) -> FaultSpec:
        if spec is None:
            return cls()
        return spec if isinstance(spec, FaultSpec) else cls.parse(spec)


# ---------------------------------------------------------------------------------------------------- helpers


class _InvalidParams(Exception):
    """Bad arguments to an API function: the call returns its failure value with RES_E_INVALID_PARAMS."""


def parse_server_tz(name: str) -> dt.tzinfo:
    """An IANA zone (``"Europe/Athens"``) or a fixed offset (``"+02:00"``, ``"-0500"``, ``"UTC"``)."""
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name.strip())
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    if name.strip().upper() == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"server_tz {name!r} is neither an IANA zone name nor an offset like '+02:00'") from exc


def server_seconds_arg(value: Any, name: str) -> int:
    """A date argument as server-clock seconds (the convention in the module docstring)."""
    if isinstance(value, bool):
        raise _InvalidParams(f"{name}={value!r} is not a date")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return math.floor(value.timestamp())
        return calendar.timegm(value.timetuple())
    if isinstance(value, dt.date):
        return calendar.timegm(value.timetuple())
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(float(value)):
        return math.floor(float(value))
    raise _InvalidParams(f"{name}={value!r} is not a datetime or a number of seconds")


def group_matches(symbol: str, group: str) -> bool:
    """MT5 group filter: comma-separated masks with ``*``, ``!`` to exclude, applied in order."""
    selected = False
    for cond in (c.strip() for c in group.split(",")):
        if not cond:
            continue
        neg = cond.startswith("!")
        if fnmatch.fnmatchcase(symbol.upper(), (cond[1:] if neg else cond).upper()):
            selected = not neg
    return selected


class _Refusal(NamedTuple):
    retcode: int
    comment: str


class _Accepted(NamedTuple):
    units: int  # signed units the deal moves (0 for an SL/TP change)
    sl: float | None
    tp: float | None


@dataclass(frozen=True, slots=True)
class _OrderCtx:
    """What an order_send request leaves for its deal: the fill comes back from ForexSim by its order id."""

    ticket: int
    magic: int
    comment: str
    time_s: int  # server seconds
    time_msc: int


_R = TypeVar("_R")


def _api(fail: Any = None) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Wrap a MetaTrader5 function: lock, process the bars closed by the clock, refuse (``fail`` + IPC error)
    while the connection is down or not initialised, map bad arguments to RES_E_INVALID_PARAMS."""

    def wrap(fn: Callable[..., _R]) -> Callable[..., _R]:
        @functools.wraps(fn)
        def inner(self: TerminalSimulator, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                now = self._now()
                self._sync(now)
                self._call_t = now
                if not self._connected(now):
                    return fail
                self._err = _OK
                try:
                    return fn(self, *args, **kwargs)
                except _InvalidParams as exc:
                    self._err = (C.RES_E_INVALID_PARAMS, f"Terminal: Invalid params: {exc}")
                    return fail

        return inner

    return wrap


# ------------------------------------------------------------------------------------------------- simulator


class TerminalSimulator(MT5Constants):
    """The MetaTrader5 module surface over historical M1 bid bars of one symbol and a ForexSim account.

    :param bars: the frame ``feeds.loaders.load_bars`` returns (bid OHLC on a tz-aware UTC index of bar opens); it
        may start before ``start`` (that part is history, readable but never traded)
    :param symbol: the instrument (``brokers.instruments``); must match the frame's ``attrs["symbol"]`` if set
    :param start: the first live bar: the first bar opening at or after this UTC time (naive = UTC) forms at start
    :param end: the last bar (inclusive; a date-only value includes that whole day); None = the frame's last bar
    :param speed: 0 = time moves only by ``sim_advance``/``sim_sleep``; else virtual seconds per wall second
    :param faults: a FaultSpec or a spec string (``"requote=0.05,disconnect=0.002"``, ``"none"``)
    :param seed: seeds ``numpy.random.default_rng``; the request and bar fault streams are spawned from it
    :param cash: initial balance in USD
    :param leverage: account leverage (margin rate = max(1/leverage, the instrument's floor))
    :param server_tz: the server clock for ``time`` fields: an IANA zone or a fixed offset like ``"+02:00"``
    :param login: the account number the terminal accepts
    :param password: the password ``initialize``/``login`` must give; None = not checked (paper use). Only a salted
        digest is kept, so it can never appear in a repr, a pickle or a log
    :param server: the trade server name the terminal accepts
    :param filling_mode: ``symbol_info().filling_mode`` flags (SYMBOL_FILLING_FOK=1 | SYMBOL_FILLING_IOC=2)
    :param name: the account holder name reported by ``account_info``
    """

    def __init__(self, *, bars: pd.DataFrame, symbol: str, start: Any, end: Any = None, speed: float = 0.0,
                 faults: FaultSpec | str | None = None, seed: int | None = None, cash: float = 100_000.0,
                 leverage: float = 30.0, server_tz: str = "Europe/Athens", login: int = 10_000_001,
                 password: str | None = None, server: str = "MTF-Simulator", filling_mode: int = 2,
                 name: str = "MTF-MARL paper account") -> None:
        self._symbol = symbol.upper()
        self._inst: Instrument = get_instrument(self._symbol)
        frame_symbol = (bars.attrs or {}).get("symbol")
        if frame_symbol and str(frame_symbol).upper() != self._symbol:
            raise ValueError(f"bars are {frame_symbol} data but symbol={symbol!r} was given")
        if not (speed >= 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be >= 0 (0 = as fast as the adapter asks), got {speed}")
        if filling_mode not in (1, 2, 3):
            raise ValueError(f"filling_mode must be SYMBOL_FILLING_FOK (1), SYMBOL_FILLING_IOC (2) or both (3), "
                             f"got {filling_mode}")
        self._tz = parse_server_tz(server_tz)
        self._tz_name = server_tz
        self._load(bars, start, end)
        self._faults = FaultSpec.coerce(faults)
        self._speed = float(speed)
        self._login = int(login)
        self._server = server
        self._name = name
        self._salt = os.urandom(16)
        self._pw_digest = None if password is None else self._digest(password)
        self._filling_mode = int(filling_mode)
        self._sim = ForexSim(self._inst, cash, leverage)  # no drawdown guard: a terminal has none
        self._leverage = leverage
        self._spreads = self._inst.spread_table()
        self._point = 10.0 ** -self._inst.digits
        req_rng, bar_rng = np.random.default_rng(seed).spawn(2)
        self._req_rng: np.random.Generator = req_rng
        self._bar_rng: np.random.Generator = bar_rng
        self._lock = threading.RLock()
        self._err: tuple[int, str] = _OK
        self._initialized = False
        self._down_until = -math.inf
        self._t = float(self._open_s[self._i0])
        self._t0 = self._t
        self._wall0 = time.monotonic()
        self._call_t = self._t
        self._processed = self._i0  # bars [i0, _processed) went through open_bar + close_bar
        self._opened = -1  # the forming bar whose open_bar ran (an order was sent in it), else -1
        self._request_id = 0
        self._next_order = _FIRST_ORDER_TICKET
        self._next_deal = _FIRST_DEAL_TICKET
        self._orders: list[TradeOrder] = []
        self._deals: list[TradeDeal] = []
        self._ctx: dict[int, _OrderCtx] = {}  # ForexSim order id -> our order
        self._pos_units = 0  # mirror of ForexSim.units as the fills arrive, to classify each deal
        self._pos_id = self._pos_ticket = self._pos_magic = 0
        self._pos_time = self._pos_time_msc = self._pos_update = self._pos_update_msc = 0
        self._pos_comment = ""
        self._stats: dict[str, float] = {k: 0 for k in (
            "requests", *REQUEST_FAULTS, "timeout_executed_retcode", "timeout_executed_none", "disconnect",
            "disconnect_seconds", "refused_calls", "refused_initialize", "market_closed_no_bar", "bars_processed",
            "bars_while_up")}
        t_dep = int(self._srv_s[self._i0])
        self._deals.append(TradeDeal(self._take_deal(), 0, t_dep, t_dep * 1000, C.DEAL_TYPE_BALANCE, C.DEAL_ENTRY_IN,
                                     0, 0, C.DEAL_REASON_CLIENT, 0.0, 0.0, 0.0, 0.0, float(cash), 0.0, "", "Deposit",
                                     ""))

    # ------------------------------------------------------------------------------------------ construction
    def _load(self, bars: pd.DataFrame, start: Any, end: Any) -> None:
        missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
        if missing:
            raise ValueError(f"bars lack columns {missing}")
        idx = bars.index
        if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
            raise ValueError("bars need a tz-aware DatetimeIndex of bar opens (load them with feeds.loaders)")
        if len(idx) == 0 or not idx.is_monotonic_increasing or idx.has_duplicates:
            raise ValueError("bars must be a non-empty, strictly increasing series of bar opens")
        utc = idx.tz_convert("UTC")
        open_s = utc.as_unit("s").asi8.astype(np.int64)
        if np.any(open_s % 60):
            raise ValueError("bar opens must be whole minutes")
        srv = utc.tz_convert(self._tz).tz_localize(None).as_unit("s").asi8.astype(np.int64)
        if len(srv) > 1 and np.any(np.diff(srv) <= 0):
            k = int(np.argmax(np.diff(srv) <= 0)) + 1
            raise ValueError(f"the server clock {self._tz_name} repeats at {utc[k]} (a DST fall-back inside the "
                             "data): choose a server_tz without it")
        lo = to_utc(start, "start", whole_day_end=False)
        if lo is None:
            raise ValueError("start is required: the first live bar")
        i0 = int(utc.searchsorted(lo, side="left"))
        hi = to_utc(end, "end", whole_day_end=True)
        iend = len(utc) if hi is None else int(utc.searchsorted(hi, side="left"))
        if i0 >= iend:
            raise ValueError(f"no bar opens in [start={start}, end={end}] (data {utc[0]} .. {utc[-1]})")
        self._i0, self._iend = i0, iend
        self._open_s = open_s[:iend]
        self._srv_s = srv[:iend]
        o, h, lo_, c = (bars[k].to_numpy(np.float64)[:iend] for k in ("open", "high", "low", "close"))
        self._o, self._h, self._l, self._c = o.tolist(), h.tolist(), lo_.tolist(), c.tolist()
        self._minutes = (open_s[:iend] // 60).tolist()
        vol = bars["volume"].to_numpy()[:iend] if "volume" in bars.columns else np.zeros(iend)
        rates = np.zeros(iend, RATES_DTYPE)
        rates["time"] = self._srv_s
        rates["open"], rates["high"], rates["low"], rates["close"] = o, h, lo_, c
        rates["tick_volume"] = np.maximum(np.nan_to_num(vol.astype(np.float64)), 1).astype(np.uint64)
        spreads = np.asarray(self._inst.spread_table())
        rates["spread"] = np.rint(spreads[(open_s[:iend] // 3600) % 24] / 10.0 ** -self._inst.digits).astype(np.int32)
        self._rates = rates

    def _digest(self, password: str) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", str(password).encode(), self._salt, 10_000)

    def __repr__(self) -> str:
        return (f"TerminalSimulator(symbol={self._symbol!r}, login={self._login}, server={self._server!r}, "
                f"clock={utc_of_s(self._now())}, faults={self._faults})")

    __str__ = __repr__

    # ----------------------------------------------------------------------------------------------- clock
    def _now(self) -> float:
        if self._speed == 0:
            return self._t
        return self._t0 + (time.monotonic() - self._wall0) * self._speed

    def _counts(self, now: float) -> tuple[int, int]:
        """(bars that exist, bars that are closed) at ``now``: a bar exists from its open, closes at open + 60."""
        n_exist = min(int(np.searchsorted(self._open_s, now, side="right")), self._iend)
        n_closed = min(int(np.searchsorted(self._open_s, now - 60.0, side="right")), self._iend)
        return n_exist, n_closed

    def _forming(self, now: float) -> int | None:
        n_exist, n_closed = self._counts(now)
        return n_closed if n_exist > n_closed else None

    def _srv_of(self, utc_s: float) -> int:
        """Server wall-clock seconds of a UTC instant."""
        s = math.floor(utc_s)
        off = dt.datetime.fromtimestamp(s, self._tz).utcoffset() or dt.timedelta(0)
        return s + int(off.total_seconds())

    def _srv_msc(self, utc_s: float) -> int:
        return self._srv_of(utc_s) * 1000 + int((utc_s - math.floor(utc_s)) * 1000)

    # ------------------------------------------------------------------------------------------ processing
    def _sync(self, now: float) -> None:
        """Run every bar closed by ``now`` through the ForexSim, in time order; draw the per-bar faults."""
        _, n_closed = self._counts(now)
        sim = self._sim
        while self._processed < n_closed:
            i = self._processed
            if self._opened != i:
                if self._opened >= 0:
                    raise RuntimeError(f"bar {self._opened} was opened but bar {i} is closing: clock went wrong")
                self._record(sim.open_bar(self._minutes[i], self._o[i]), i)
            self._record(sim.close_bar(self._h[i], self._l[i], self._c[i]), i)
            self._opened = -1
            self._processed = i + 1
            self._stats["bars_processed"] += 1
            u, length = self._bar_rng.random(), self._bar_rng.uniform(self._faults.disconnect_min_s,
                                                                     self._faults.disconnect_max_s)
            closed_at = float(self._open_s[i] + 60)
            if closed_at < self._down_until:
                continue  # a link that is down cannot drop again (the draws are made anyway: a fixed stream)
            self._stats["bars_while_up"] += 1
            if u < self._faults.disconnect:
                self._down_until = closed_at + length
                self._initialized = False  # the IPC link is gone: a reconnect (initialize) is needed
                self._stats["disconnect"] += 1
                self._stats["disconnect_seconds"] += length
                logger.debug("simulated disconnect at %s for %.0f s", utc_of_s(closed_at), length)

    def _open_forming(self, i: int) -> None:
        """Run the forming bar's open_bar (once), so an order sent now fills at its open like in a backtest."""
        if i != self._processed:
            raise RuntimeError(f"forming bar {i} but {self._processed} bars processed: clock went wrong")
        if self._opened != i:
            self._record(self._sim.open_bar(self._minutes[i], self._o[i]), i)
            self._opened = i

    def _connected(self, now: float) -> bool:
        if now < self._down_until or not self._initialized:
            self._err = _NO_IPC
            self._stats["refused_calls"] += 1
            return False
        return True

    def _take_order(self) -> int:
        self._next_order += 1
        return self._next_order - 1

    def _take_deal(self) -> int:
        self._next_deal += 1
        return self._next_deal - 1

    def _record(self, fills: tuple[Fill, ...] | list[Fill], bar: int) -> None:
        """Turn ForexSim fills into deals (and a history order for the broker's own fills)."""
        for fill in fills:
            if fill.reason == "market":
                ctx = self._ctx.pop(fill.order_id)
                order, magic, comment, reason = ctx.ticket, ctx.magic, ctx.comment, C.DEAL_REASON_EXPERT
                t_s, t_msc = ctx.time_s, ctx.time_msc
            else:
                order, magic = self._take_order(), self._pos_magic
                t_s = int(self._srv_s[bar]) + 59  # the core does not know when in the bar a level was touched
                t_msc = t_s * 1000
                reason, comment, order_reason = self._broker_fill_labels(fill)
                self._orders.append(TradeOrder(
                    order, t_s, t_msc, t_s, t_msc, 0, C.ORDER_TYPE_BUY if fill.units > 0 else C.ORDER_TYPE_SELL,
                    C.ORDER_TIME_GTC, C.ORDER_FILLING_IOC, C.ORDER_STATE_FILLED, magic, self._pos_id, 0, order_reason,
                    abs(fill.lots), 0.0, fill.price, 0.0, 0.0, fill.price, 0.0, self._symbol, comment, ""))
            before, after = self._pos_units, self._pos_units + fill.units
            if fill.closed_lots and fill.opened_lots:
                entry = C.DEAL_ENTRY_INOUT
            elif fill.closed_lots:
                entry = C.DEAL_ENTRY_OUT
            else:
                entry = C.DEAL_ENTRY_IN
            if before == 0:  # a new position: identifier = ticket = the opening order
                self._pos_id = self._pos_ticket = order
                self._pos_time, self._pos_time_msc = t_s, t_msc
                self._pos_magic, self._pos_comment = magic, comment
            elif entry == C.DEAL_ENTRY_INOUT:  # netting reversal: same identifier, the ticket becomes this order's
                self._pos_ticket = order
                self._pos_time, self._pos_time_msc = t_s, t_msc
                self._pos_magic, self._pos_comment = magic, comment
            self._deals.append(TradeDeal(
                self._take_deal(), order, t_s, t_msc, C.DEAL_TYPE_BUY if fill.units > 0 else C.DEAL_TYPE_SELL, entry,
                magic, self._pos_id, reason, abs(fill.lots), fill.price, -fill.commission, 0.0, fill.realised_pnl,
                0.0, self._symbol, comment, ""))
            self._pos_units = after
            self._pos_update, self._pos_update_msc = t_s, t_msc
            if after == 0:
                self._pos_id = self._pos_ticket = self._pos_magic = 0
                self._pos_comment = ""

    def _broker_fill_labels(self, fill: Fill) -> tuple[int, str, int]:
        """(deal reason, MT5-style comment, order reason) of a fill the broker made itself."""
        px = f"{fill.price:.{self._inst.digits}f}"
        if fill.reason == "stop_loss":
            return C.DEAL_REASON_SL, f"[sl {px}]", C.ORDER_REASON_SL
        if fill.reason == "take_profit":
            return C.DEAL_REASON_TP, f"[tp {px}]", C.ORDER_REASON_TP
        # stop_out (equity_stop needs a guard, which a terminal has not): equity at the worst price vs margin
        equity = self._sim.balance + fill.commission
        margin = self._sim.margin_for(abs(fill.lots), fill.price)
        level = 100.0 * equity / margin if margin else 0.0
        return C.DEAL_REASON_SO, f"[so {level:.2f}%, {equity:.2f}/{margin:.2f}]", C.ORDER_REASON_SO

    # -------------------------------------------------------------------------------------- account views
    def _mark(self) -> tuple[float, float]:
        """(bid, spread) the position is valued at: the forming open once an order ran in this bar, else the
        last close (ForexSim's own mark)."""
        sim = self._sim
        return (self._o[self._opened], sim.spread) if self._opened >= 0 else (sim.bid, sim.spread)

    def _equity_margin(self) -> tuple[float, float]:
        sim = self._sim
        if not sim.units:
            return sim.balance, 0.0
        if self._opened < 0:
            return sim.equity, sim.margin_used
        bid, spread = self._mark()
        return sim.balance + sim.unrealised_at(sim.mark_price(bid, spread)), sim.margin_for(sim.lots, bid)

    def _tick_prices(self, now: float) -> tuple[int, float, float]:
        """(server time, bid, ask) of the current tick: the forming bar's open, else the last close."""
        f = self._forming(now)
        if f is not None:
            bid, srv = self._o[f], int(self._srv_s[f])
            spread = self._spreads[(self._minutes[f] // 60) % 24]
        else:
            n_exist, _ = self._counts(now)
            i = n_exist - 1
            bid, srv = self._c[i], int(self._srv_s[i]) + 59
            spread = self._spreads[(self._minutes[i] // 60) % 24]
        return srv, bid, bid + spread

    def _position(self) -> TradePosition | None:
        sim = self._sim
        if not sim.units:
            return None
        bid, spread = self._mark()
        price = sim.mark_price(bid, spread)
        return TradePosition(
            self._pos_ticket, self._pos_time, self._pos_time_msc, self._pos_update, self._pos_update_msc,
            C.POSITION_TYPE_BUY if sim.units > 0 else C.POSITION_TYPE_SELL, self._pos_magic, self._pos_id,
            C.POSITION_REASON_EXPERT, abs(sim.lots), sim.avg_price, sim.sl or 0.0, sim.tp or 0.0, price, 0.0,
            sim.unrealised_at(price), self._symbol, self._pos_comment, "")

    def _check_symbol(self, symbol: Any) -> bool:
        if symbol != self._symbol:
            self._err = _NOT_FOUND
            return False
        return True

    # ============================================================================== MetaTrader5: connection
    def initialize(self, path: str | None = None, *, login: int | None = None, password: str | None = None,
                   server: str | None = None, timeout: int | None = None, portable: bool = False) -> bool:
        """Connect to the (simulated) terminal; fails while a disconnect lasts, or on wrong credentials."""
        with self._lock:
            now = self._now()
            self._sync(now)
            if now < self._down_until:
                self._err = _IPC_INIT
                self._stats["refused_initialize"] += 1
                return False
            if not self._credentials_ok(login, password, server):
                self._err = _AUTH_FAILED
                return False
            self._initialized = True
            self._err = _OK
            return True

    @_api(fail=False)
    def login(self, login: int, password: str | None = None, server: str | None = None,
              timeout: int | None = None) -> bool:
        """Log in to the trading account; only the configured one exists."""
        if login is None or not self._credentials_ok(login, password, server):
            self._err = _AUTH_FAILED
            return False
        return True

    def _credentials_ok(self, login: Any, password: Any, server: Any) -> bool:
        if login is not None and (isinstance(login, bool) or not isinstance(login, int | np.integer)
                                  or int(login) != self._login):
            return False
        if server is not None and server != self._server:
            return False
        if self._pw_digest is not None:
            return password is not None and hmac.compare_digest(self._digest(password), self._pw_digest)
        return True

    def shutdown(self) -> None:
        """Close the connection to the terminal (the market goes on)."""
        with self._lock:
            self._initialized = False

    def last_error(self) -> tuple[int, str]:
        """(code, description) of the last call, as the real module keeps it."""
        with self._lock:
            return self._err

    @_api()
    def version(self) -> tuple[int, int, str]:
        return 500, SIM_BUILD, "MTF-MARL terminal simulator"

    @_api()
    def terminal_info(self) -> TerminalInfo:
        return TerminalInfo(False, False, True, False, True, False, False, False, False, False, SIM_BUILD, MAX_BARS,
                            0, 20_000, 0.0, 0.0, "MTF-MARL", "MTF-MARL terminal simulator", "English", "", "", "")

    @_api()
    def account_info(self) -> AccountInfo:
        sim = self._sim
        equity, margin = self._equity_margin()
        return AccountInfo(
            self._login, C.ACCOUNT_TRADE_MODE_DEMO, int(self._leverage), 0, C.ACCOUNT_STOPOUT_MODE_PERCENT, True,
            True, C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING, 2, False, sim.balance, 0.0, equity - sim.balance, equity,
            margin, equity - margin, 100.0 * equity / margin if margin else 0.0, 100.0, 100.0 * sim.stop_out_level,
            0.0, 0.0, 0.0, 0.0, 0.0, self._name, self._server, "USD", "MTF-MARL")

    # ================================================================================= MetaTrader5: symbols
    @_api()
    def symbols_total(self) -> int:
        return 1

    @_api()
    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...]:
        info = self._symbol_info()
        return (info,) if group is None or group_matches(self._symbol, group) else ()

    @_api()
    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        return self._symbol_info() if self._check_symbol(symbol) else None

    @_api(fail=False)
    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        return self._check_symbol(symbol)

    @_api()
    def symbol_info_tick(self, symbol: str) -> Tick | None:
        if not self._check_symbol(symbol):
            return None
        srv, bid, ask = self._tick_prices(self._call_t)
        return Tick(srv, bid, ask, 0.0, 0, srv * 1000, C.TICK_FLAG_BID | C.TICK_FLAG_ASK, 0.0)

    def _symbol_info(self) -> SymbolInfo:
        inst, point = self._inst, self._point
        srv, bid, ask = self._tick_prices(self._call_t)
        tick_value = inst.to_account(inst.contract_size * point, bid)
        pip_points = inst.pip_size / point
        return SymbolInfo(
            select=True, visible=True, time=srv, digits=inst.digits, spread=round((ask - bid) / point),
            spread_float=True, trade_calc_mode=C.SYMBOL_CALC_MODE_FOREX, trade_mode=C.SYMBOL_TRADE_MODE_FULL,
            trade_exemode=C.SYMBOL_TRADE_EXECUTION_MARKET, swap_mode=C.SYMBOL_SWAP_MODE_POINTS,
            swap_rollover3days=(inst.triple_swap_weekday + 1) % 7, expiration_mode=15,
            filling_mode=self._filling_mode, order_mode=127, order_gtc_mode=C.SYMBOL_ORDERS_GTC, bid=bid, bidhigh=bid,
            bidlow=bid, ask=ask, askhigh=ask, asklow=ask, point=point, trade_tick_value=tick_value,
            trade_tick_value_profit=tick_value, trade_tick_value_loss=tick_value, trade_tick_size=point,
            trade_contract_size=float(inst.contract_size), volume_min=inst.min_lot, volume_max=inst.max_lot,
            volume_step=inst.lot_step, swap_long=inst.swap_long_pips * pip_points,
            swap_short=inst.swap_short_pips * pip_points, margin_hedged=float(inst.contract_size),
            currency_base=inst.base, currency_profit=inst.quote, currency_margin=inst.base,
            description=f"{inst.base} vs {inst.quote}", name=self._symbol, path=f"Forex\\{self._symbol}")

    # =================================================================================== MetaTrader5: rates
    def _rates_check(self, symbol: str, timeframe: int) -> bool:
        if not self._check_symbol(symbol):
            return False
        if timeframe != C.TIMEFRAME_M1:
            raise _InvalidParams(f"timeframe {timeframe}: the simulator has M1 bars only (TIMEFRAME_M1)")
        return True

    def _bars_out(self, a: int, b: int) -> np.ndarray:
        """Bars [a, b) oldest first; the forming bar with its partial values (open everywhere, one tick)."""
        out = self._rates[a:b].copy()
        f = self._forming(self._call_t)
        if f is not None and a <= f < b:
            k = f - a
            out["high"][k] = out["low"][k] = out["close"][k] = out["open"][k]
            out["tick_volume"][k] = 1
        return out

    @staticmethod
    def _count_arg(count: Any, name: str) -> int:
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise _InvalidParams(f"{name}={count!r} must be a non-negative integer")
        return int(count)

    @_api()
    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray | None:
        """``count`` bars ending ``start_pos`` bars before the newest (0 = the newest, i.e. the forming bar)."""
        if not self._rates_check(symbol, timeframe):
            return None
        start_pos, count = self._count_arg(start_pos, "start_pos"), self._count_arg(count, "count")
        n_exist, _ = self._counts(self._call_t)
        b = max(n_exist - start_pos, 0)
        return self._bars_out(max(b - min(count, MAX_BARS), 0), b)

    @_api()
    def copy_rates_from(self, symbol: str, timeframe: int, date_from: Any, count: int) -> np.ndarray | None:
        """The ``count`` newest bars opening at or before ``date_from`` (server clock)."""
        if not self._rates_check(symbol, timeframe):
            return None
        t, count = server_seconds_arg(date_from, "date_from"), self._count_arg(count, "count")
        n_exist, _ = self._counts(self._call_t)
        b = int(np.searchsorted(self._srv_s[:n_exist], t, side="right"))
        return self._bars_out(max(b - min(count, MAX_BARS), 0), b)

    @_api()
    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
        """Bars opening in [date_from, date_to] (server clock), at most MAX_BARS from ``date_from`` on."""
        if not self._rates_check(symbol, timeframe):
            return None
        lo, hi = server_seconds_arg(date_from, "date_from"), server_seconds_arg(date_to, "date_to")
        n_exist, _ = self._counts(self._call_t)
        srv = self._srv_s[:n_exist]
        a = int(np.searchsorted(srv, lo, side="left"))
        b = int(np.searchsorted(srv, hi, side="right"))
        return self._bars_out(a, max(a, min(b, a + MAX_BARS)))

    # ============================================================================ MetaTrader5: trading views
    @_api()
    def positions_total(self) -> int:
        return 1 if self._sim.units else 0

    @_api()
    def positions_get(self, *, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple[TradePosition, ...]:
        pos = self._position()
        if pos is None:
            return ()
        if symbol is not None:
            keep = symbol == pos.symbol
        elif group is not None:
            keep = group_matches(pos.symbol, group)
        elif ticket is not None:
            keep = ticket == pos.ticket
        else:
            keep = True
        return (pos,) if keep else ()

    @_api()
    def orders_total(self) -> int:
        return 0  # market orders only: nothing ever rests

    @_api()
    def orders_get(self, *, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple[TradeOrder, ...]:
        return ()

    def _history(self, rows: list, time_field: str, date_from: Any, date_to: Any, group: str | None,
                 ticket: int | None, position: int | None, ticket_field: str, position_field: str) -> tuple:
        if ticket is not None:
            return tuple(r for r in rows if getattr(r, ticket_field) == ticket)
        if position is not None:
            return tuple(r for r in rows if getattr(r, position_field) == position)
        if date_from is None or date_to is None:
            raise _InvalidParams("give date_from and date_to, or ticket=, or position=")
        lo, hi = server_seconds_arg(date_from, "date_from"), server_seconds_arg(date_to, "date_to")
        return tuple(r for r in rows if lo <= getattr(r, time_field) <= hi
                     and (group is None or group_matches(r.symbol, group)))

    @_api()
    def history_deals_get(self, date_from: Any = None, date_to: Any = None, *, group: str | None = None,
                          ticket: int | None = None, position: int | None = None) -> tuple[TradeDeal, ...]:
        """Deals by date range (server clock, inclusive; optional ``group``), or of one order (``ticket=``, its
        DEAL_ORDER) or one position (``position=``, DEAL_POSITION_ID)."""
        return self._history(self._deals, "time", date_from, date_to, group, ticket, position, "order",
                             "position_id")

    @_api()
    def history_deals_total(self, date_from: Any, date_to: Any) -> int:
        return len(self._history(self._deals, "time", date_from, date_to, None, None, None, "order", "position_id"))

    @_api()
    def history_orders_get(self, date_from: Any = None, date_to: Any = None, *, group: str | None = None,
                           ticket: int | None = None, position: int | None = None) -> tuple[TradeOrder, ...]:
        """Orders by setup time range, or ``ticket=`` (the order), or ``position=`` (ORDER_POSITION_ID)."""
        return self._history(self._orders, "time_setup", date_from, date_to, group, ticket, position, "ticket",
                             "position_id")

    @_api()
    def history_orders_total(self, date_from: Any, date_to: Any) -> int:
        return len(self._history(self._orders, "time_setup", date_from, date_to, None, None, None, "ticket",
                                 "position_id"))

    @_api()
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        if not self._check_symbol(symbol):
            return None
        if action not in (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL) or not (volume > 0 and price > 0):
            raise _InvalidParams("action must be ORDER_TYPE_BUY/SELL, volume and price positive")
        return self._sim.margin_for(float(volume), float(price))

    @_api()
    def order_calc_profit(self, action: int, symbol: str, volume: float, price_open: float,
                          price_close: float) -> float | None:
        if not self._check_symbol(symbol):
            return None
        if action not in (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL) or not (volume > 0 and price_open > 0
                                                                        and price_close > 0):
            raise _InvalidParams("action must be ORDER_TYPE_BUY/SELL, volume and prices positive")
        sign = 1.0 if action == C.ORDER_TYPE_BUY else -1.0
        units = sign * float(volume) * self._inst.contract_size
        return self._inst.to_account(units * (float(price_close) - float(price_open)), float(price_close))

    # ================================================================================ MetaTrader5: orders
    def _parse_request(self, request: Any) -> TradeRequest:
        if not isinstance(request, Mapping):
            raise _InvalidParams(f"request must be a dict of TradeRequest fields, got {type(request).__name__}")
        unknown = set(request) - set(TradeRequest._fields)
        if unknown:
            raise _InvalidParams(f"unknown request field(s) {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, raw in request.items():
            kind = type(TradeRequest._field_defaults[key])
            try:
                values[key] = kind(raw) if kind is not str else str(raw)
            except (TypeError, ValueError) as exc:
                raise _InvalidParams(f"request field {key}={raw!r} is not {kind.__name__}") from exc
            if kind is float and not math.isfinite(values[key]):
                raise _InvalidParams(f"request field {key}={raw!r} is not finite")
        values["comment"] = values.get("comment", "")[:COMMENT_LENGTH]
        return TradeRequest(**values)

    def _validate(self, req: TradeRequest, bar: int) -> _Refusal | _Accepted:
        """Why the trade server refuses ``req`` during forming bar ``bar``, or what it would do."""
        sim, inst = self._sim, self._inst
        if req.symbol != self._symbol and not (req.action == C.TRADE_ACTION_SLTP and req.symbol == ""):
            return _Refusal(C.TRADE_RETCODE_INVALID, f"Unknown symbol {req.symbol!r}")
        bid = self._o[bar]
        ask = bid + self._spreads[(self._minutes[bar] // 60) % 24]
        sl = req.sl or None
        tp = req.tp or None
        if (sl is not None and sl < 0) or (tp is not None and tp < 0):
            return _Refusal(C.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
        if req.action == C.TRADE_ACTION_SLTP:
            if not sim.units or (req.position and req.position != self._pos_ticket):
                return _Refusal(C.TRADE_RETCODE_POSITION_CLOSED, "Position doesn't exist")
            if not self._stops_ok(sim.units > 0, sl, tp, bid, ask):
                return _Refusal(C.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
            if sl == sim.sl and tp == sim.tp:
                return _Refusal(C.TRADE_RETCODE_NO_CHANGES, "No changes")
            return _Accepted(0, sl, tp)
        if req.action != C.TRADE_ACTION_DEAL:
            return _Refusal(C.TRADE_RETCODE_INVALID, "Unsupported trade action (market deals and SL/TP changes only)")
        if req.type not in (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL):
            return _Refusal(C.TRADE_RETCODE_INVALID, "Unsupported order type (market orders only)")
        allowed = {C.ORDER_FILLING_FOK: C.SYMBOL_FILLING_FOK, C.ORDER_FILLING_IOC: C.SYMBOL_FILLING_IOC}
        if not self._filling_mode & allowed.get(req.type_filling, 0):
            return _Refusal(C.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode")
        if req.volume <= 0 or inst.lots_ok(round(req.volume, 8)) is not None:
            return _Refusal(C.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume")
        units = inst.units(req.volume) * (1 if req.type == C.ORDER_TYPE_BUY else -1)
        if req.position:
            if not sim.units or req.position != self._pos_ticket:
                return _Refusal(C.TRADE_RETCODE_POSITION_CLOSED, "Position doesn't exist")
            if (units > 0) == (sim.units > 0):
                return _Refusal(C.TRADE_RETCODE_INVALID, "An order for a position must be opposite to it")
            if abs(units) > abs(sim.units):
                return _Refusal(C.TRADE_RETCODE_INVALID_CLOSE_VOLUME, "Invalid close volume")
        result = sim.units + units
        if sl is not None or tp is not None:
            if result == 0 or not self._stops_ok(result > 0, sl, tp, bid, ask):
                return _Refusal(C.TRADE_RETCODE_INVALID_STOPS, "Invalid stops")
        return _Accepted(units, sl, tp)

    @staticmethod
    def _stops_ok(long: bool, sl: float | None, tp: float | None, bid: float, ask: float) -> bool:
        """A long closes at the bid: sl below it, tp above; a short closes at the ask: sl above, tp below."""
        if long:
            return (sl is None or sl < bid) and (tp is None or tp > bid)
        return (sl is None or sl > ask) and (tp is None or tp < ask)

    def _result(self, req: TradeRequest, retcode: int, comment: str, bid: float = 0.0, ask: float = 0.0,
                deal: int = 0, order: int = 0, volume: float = 0.0, price: float = 0.0) -> OrderSendResult:
        return OrderSendResult(retcode, deal, order, volume, price, bid, ask, comment, self._request_id, 0, req)

    @_api()
    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        """Check a request against the account without sending it (no faults; the forming bar is not opened)."""
        req = self._parse_request(request)
        sim = self._sim
        equity, margin = self._equity_margin()

        def result(retcode: int, comment: str, margin_after: float) -> OrderCheckResult:
            level = 100.0 * equity / margin_after if margin_after else 0.0
            return OrderCheckResult(retcode, sim.balance, equity, equity - sim.balance, margin_after,
                                    equity - margin_after, level, comment, req)

        bar = self._forming(self._call_t)
        if bar is None:
            return result(C.TRADE_RETCODE_MARKET_CLOSED, "Market closed", margin)
        checked = self._validate(req, bar)
        if isinstance(checked, _Refusal):
            return result(checked.retcode, checked.comment, margin)
        if req.action == C.TRADE_ACTION_SLTP:
            return result(0, "Done", margin)
        units = checked.units
        bid = self._o[bar]
        price = bid + self._spreads[(self._minutes[bar] // 60) % 24] if units > 0 else bid
        after = sim.margin_for((sim.units + units) / self._inst.contract_size, price)
        if after > equity and abs(sim.units + units) > abs(sim.units):
            return result(C.TRADE_RETCODE_NO_MONEY, "No money", after)
        return result(0, "Done", after)

    @_api()
    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        """Send a request to the trade server (see the module docstring for the faults it may meet)."""
        req = self._parse_request(request)
        now = self._call_t
        self._stats["requests"] += 1
        self._request_id += 1
        u_kind, u_variant, u_part = (float(x) for x in self._req_rng.random(3))
        kind = self._fault_kind(u_kind)
        _, bid, ask = self._tick_prices(now)
        if kind == "too_many_requests":
            self._stats[kind] += 1
            return self._result(req, C.TRADE_RETCODE_TOO_MANY_REQUESTS, "Too many requests", bid, ask)
        if kind == "market_closed":
            self._stats[kind] += 1
            return self._result(req, C.TRADE_RETCODE_MARKET_CLOSED, "Market closed", bid, ask)
        bar = self._forming(now)
        if bar is None:  # between bars (a gap reached by sim_sleep, or after the data): no market to fill at
            self._stats["market_closed_no_bar"] += 1
            return self._result(req, C.TRADE_RETCODE_MARKET_CLOSED, "Market closed", bid, ask)
        checked = self._validate(req, bar)
        if isinstance(checked, _Refusal):
            return self._result(req, checked.retcode, checked.comment, bid, ask)
        if req.action == C.TRADE_ACTION_SLTP:
            self._sim.set_brackets(checked.sl, checked.tp)
            if kind == "timeout_executed":
                return self._timed_out(req, u_variant, bid, ask)
            return self._result(req, C.TRADE_RETCODE_DONE, "Request executed", bid, ask)

        units, sl, tp = checked.units, checked.sl, checked.tp
        if kind == "requote":
            self._stats[kind] += 1
            return self._result(req, C.TRADE_RETCODE_REQUOTE, "Requote", bid, ask)
        step = self._inst.step_units
        steps = abs(units) // step
        partial = kind == "partial" and req.type_filling == C.ORDER_FILLING_IOC and steps >= 2
        if partial:
            self._stats["partial"] += 1
            units = (1 + int(u_part * (steps - 1))) * step * (1 if units > 0 else -1)
        # THE step that makes a live fill equal to a backtest fill: the forming bar's open_bar runs now (rollover
        # swap, then nothing pending), and execute_pending fills this order at that open.
        self._open_forming(bar)
        ticket = self._take_order()
        sim = self._sim
        oid = sim.submit(units / self._inst.contract_size, sl, tp)
        if isinstance(oid, Rejection):
            return self._rejected(req, oid.reason, bid, ask)
        self._ctx[oid] = _OrderCtx(ticket, req.magic, req.comment, self._srv_of(now), self._srv_msc(now))
        n_deals = len(self._deals)
        self._record(sim.execute_pending(), bar)
        mine = [d for d in self._deals[n_deals:] if d.order == ticket]
        if not mine:  # execute_pending refuses an order only when the margin is not there at the open
            self._ctx.pop(oid, None)
            return self._rejected(req, "insufficient margin at fill", bid, ask)
        deal = mine[0]
        executed = deal.volume
        remaining = round(req.volume - executed, 8)
        self._orders.append(TradeOrder(
            ticket, deal.time, deal.time_msc, deal.time, deal.time_msc, 0, req.type, req.type_time, req.type_filling,
            C.ORDER_STATE_PARTIAL if partial else C.ORDER_STATE_FILLED, req.magic, deal.position_id, 0,
            C.ORDER_REASON_EXPERT, req.volume, remaining, deal.price, req.sl, req.tp, deal.price, 0.0, self._symbol,
            req.comment, ""))
        if kind == "timeout_executed":
            return self._timed_out(req, u_variant, bid, ask)
        if partial:
            return self._result(req, C.TRADE_RETCODE_DONE_PARTIAL, "Request executed partially", bid, ask,
                                deal.ticket, ticket, executed, deal.price)
        return self._result(req, C.TRADE_RETCODE_DONE, "Request executed", bid, ask, deal.ticket, ticket, executed,
                            deal.price)

    def _fault_kind(self, u: float) -> RequestFault | None:
        edge = 0.0
        for kind in REQUEST_FAULTS:
            edge += getattr(self._faults, kind)
            if u < edge:
                return kind
        return None

    def _timed_out(self, req: TradeRequest, u_variant: float, bid: float, ask: float) -> OrderSendResult | None:
        """THE dangerous case: the request was executed, but the caller does not learn it."""
        self._stats["timeout_executed"] += 1
        if u_variant < 0.5:
            self._stats["timeout_executed_retcode"] += 1
            return self._result(req, C.TRADE_RETCODE_TIMEOUT, "Timeout", bid, ask)
        self._stats["timeout_executed_none"] += 1
        self._err = _IPC_TIMEOUT
        return None

    def _rejected(self, req: TradeRequest, reason: str, bid: float, ask: float) -> OrderSendResult:
        """A ForexSim refusal as the trade server's answer: margin -> NO_MONEY, anything else -> REJECT."""
        if "margin" in reason:
            return self._result(req, C.TRADE_RETCODE_NO_MONEY, "No money", bid, ask)
        return self._result(req, C.TRADE_RETCODE_REJECT, f"Request rejected: {reason}"[:64], bid, ask)

    # ============================================================================ simulator-only controls
    def sim_time(self) -> float:
        """Virtual UTC time, seconds since the epoch (not part of MetaTrader5)."""
        with self._lock:
            return self._now()

    def sim_sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (reconnect back-off); with speed > 0, really sleep seconds / speed
        (not part of MetaTrader5)."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"sim_sleep needs a non-negative number of seconds, got {seconds}")
        if self._speed > 0:
            time.sleep(seconds / self._speed)
            return
        with self._lock:
            self._t += float(seconds)
            self._sync(self._t)

    def sim_advance(self) -> bool:
        """Move to the open of the next bar after the forming one (the forming bar closes); across a weekend or a
        hole, straight to the next bar. After the last bar closes there is nothing left: returns False (not part
        of MetaTrader5)."""
        with self._lock:
            now = self._now()
            n_exist, n_closed = self._counts(now)
            if n_exist < self._iend:
                target = float(self._open_s[n_exist])  # the bar after the forming one (or after the gap)
            elif n_closed < self._iend:
                target = float(self._open_s[self._iend - 1] + 60)  # close the last bar
            else:
                return False
            if self._speed == 0:
                self._t = target
                self._sync(self._t)
                return True
        time.sleep(max(target - now, 0.0) / self._speed)
        return True

    def sim_stats(self) -> dict[str, float]:
        """Counters of every injected fault and of what the terminal refused (not part of MetaTrader5)."""
        with self._lock:
            self._sync(self._now())
            return dict(self._stats)


def utc_of_s(seconds: float) -> str:
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def module_surface(sim: TerminalSimulator) -> dict[str, Any]:
    """Name -> object of everything a ``MetaTrader5`` module made from ``sim`` carries: the functions (bound to
    ``sim``), the sim_* controls, the constants and the result types."""
    surface: dict[str, Any] = {name: getattr(sim, name) for name in (*API_FUNCTIONS, *SIM_FUNCTIONS)}
    surface.update(mt5_constants())
    surface.update({t.__name__: t for t in RESULT_TYPES})
    surface["__version__"] = "5.0.5735"
    surface["__author__"] = "MTF-MARL terminal simulator (MetaTrader5 surface)"
    return surface
