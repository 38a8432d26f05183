"""Errors raised on bad market data: corrupt data is worse than no data."""


class DataError(ValueError):
    """Market data that cannot be used as is; the message names the file and the first bad row."""
