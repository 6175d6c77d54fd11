"""Settings given on a bench script's command line: 'a=1,b=0.5' -> {field: value}, typed like a dataclass value's fields
(a Recipe or TrainSettings). No engine import, so scripts that load `engine` from another tree can use it."""
from __future__ import annotations


def parse_overrides(text: str, defaults) -> dict:
    """'a=1,b=0.5' -> {field: value} typed like the field of `defaults` (bools: 1/true/yes)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        kind = type(getattr(defaults, key))
        if kind is bool:
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            out[key] = value if kind is str else kind(float(value)) if kind is int else kind(value)
    return out
