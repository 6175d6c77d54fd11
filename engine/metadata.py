"""The free-form part of a model's metadata (everything but the format's own structure block), type-checked in one
place when a file is read, so that no command trips over a wrong type later.

Known keys and the form every reader may rely on after `sanitize_metadata`:

    metrics:      dict. Each value is a number (e.g. "psnr", "train_psnr_recent"), or, for keys ending in
                  "_per_lod" (written by `vbnf eval --store`), a list of {"lod": int >= 0, "psnr": number,
                  "ssim": number (optional)} rows.
    conversions:  list of dicts (one per `vbnf convert`; see engine/convert.py).
    provenance:   dict of any JSON values (printed by `vbnf info`).
    dataset:      str, the data set path the viewer trains on.
Other keys are kept as they are (any JSON). A known key of the wrong type, or an entry inside one, is dropped with
one logged warning line (logger "vbnf.metadata") naming the file and the key; a model is never refused for it.
"""
from __future__ import annotations

import logging

log = logging.getLogger("vbnf.metadata")


def sanitize_metadata(metadata: dict, source: str = "<bytes>") -> dict:
    """A copy of `metadata` (a dict from the file's JSON) whose known keys have the documented types; what does not
    fit is dropped and logged (one line per file listing what was dropped)."""
    out = dict(metadata)
    dropped: list[str] = []
    if "metrics" in out:
        out["metrics"] = _metrics(out["metrics"], dropped)
        if out["metrics"] is None:
            del out["metrics"]
    if "conversions" in out:
        value = out["conversions"]
        if not isinstance(value, list):
            dropped.append(f"conversions ({_type(value)}, expected a list)")
            del out["conversions"]
        else:
            kept = [c for c in value if isinstance(c, dict)]
            if len(kept) != len(value):
                dropped.append(f"{len(value) - len(kept)} conversions entries that are not objects")
            out["conversions"] = kept
    for key, kind in (("provenance", dict), ("dataset", str)):
        if key in out and not isinstance(out[key], kind):
            dropped.append(f"{key} ({_type(out[key])}, expected {'an object' if kind is dict else 'a string'})")
            del out[key]
    if dropped:
        message = f"{source}: ignoring metadata of the wrong type: {'; '.join(dropped)}"
        if message not in _said:  # a command reads the metadata of one file more than once: say it once
            if len(_said) >= 64:
                _said.clear()
            _said.add(message)
            log.warning("%s", message)
    return out


_said: set[str] = set()
"""Warnings already logged by this process (a memo, not a setting)."""


def _metrics(value, dropped: list[str]) -> dict | None:
    if not isinstance(value, dict):
        dropped.append(f"metrics ({_type(value)}, expected an object)")
        return None
    out = {}
    for key, v in value.items():
        if key.endswith("_per_lod"):
            rows = _per_lod_rows(v)
            if rows is None:
                dropped.append(f"metrics.{key} (expected a list of {{lod, psnr}} rows)")
            else:
                if len(rows) != len(v):
                    dropped.append(f"{len(v) - len(rows)} rows of metrics.{key}")
                out[key] = rows
        elif _is_number(v):
            out[key] = v
        else:
            dropped.append(f"metrics.{key} ({_type(v)}, expected a number)")
    return out


def _per_lod_rows(value) -> list[dict] | None:
    if not isinstance(value, list):
        return None
    rows = []
    for row in value:
        if (isinstance(row, dict) and isinstance(row.get("lod"), int) and not isinstance(row.get("lod"), bool)
                and row["lod"] >= 0 and _is_number(row.get("psnr")) and _is_number(row.get("ssim", 0.0))):
            rows.append(row)
    return rows


def _is_number(v) -> bool:
    """int or float (not bool); NaN and infinities count (Python's JSON writes them for a failed metric), but an int
    too large for a float does not (float() of it would raise)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, float) or abs(v) <= 10 ** 300


def _type(v) -> str:
    """'a list', 'an object', 'null', ... for messages."""
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean", int: "an int",
             float: "a float"}
    return names.get(type(v), type(v).__name__)
