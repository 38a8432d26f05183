"""Connections to trading terminals: the MetaTrader 5 terminal simulator and its rpyc server (live stores later)."""
