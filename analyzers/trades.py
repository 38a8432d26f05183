"""Closed trades as Backtrader reports them through ``notify_trade``."""

from __future__ import annotations

import backtrader as bt


class TradeLog(bt.Analyzer):
    """One row per closed trade: open/close time (UTC), signed size in units, entry price, P&L in USD."""

    def start(self) -> None:
        self.rows: list[dict] = []
        self._open: dict[int, tuple] = {}

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.justopened:
            self._open[trade.ref] = (trade.data.datetime.datetime(0), trade.size, trade.price)
        if trade.isclosed:
            opened, size, price = self._open.pop(trade.ref, (None, float("nan"), trade.price))
            self.rows.append({
                "open_time": opened, "close_time": trade.data.datetime.datetime(0), "size": size,
                "entry_price": price, "pnl": trade.pnl, "commission": trade.commission,
                "pnl_net": trade.pnlcomm, "bars": trade.barlen,
            })

    def get_analysis(self) -> list[dict]:
        return self.rows
