"""User-facing errors: each one's message is a single line saying what failed, where, and what to do."""
from __future__ import annotations


class VbnfError(Exception):
    """A user-facing failure; str(e) is one line saying what, where, what to do."""


class DataError(VbnfError):
    """A data set (transforms JSON or images) cannot be read."""


class FormatError(VbnfError):
    """A .vbnf model file is malformed; the message names the problem and the byte offset."""


def shown(value) -> str:
    """A value for a one-line message: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
