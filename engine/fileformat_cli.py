"""`vbnf info [MODEL] [--json]`: header, the bitrate ladder (bytes needed for each LOD), bitwidths, grid kind and the
metrics stored at save time. Reads only the header and the metadata chunk, so it also works on a partial download.
Without MODEL it describes the bundled default model (engine/bundled.py).
"""
from __future__ import annotations

import argparse
import json

from engine.fileformat import CHUNK_OVERHEAD, HEADER_BYTES, ModelLayout, model_layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="a .vbnf model file (default: the bundled default.vbnf)")
    parser.add_argument("--json", action="store_true", help="print the layout as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        from engine.bundled import bundled_model_path
        args.model = str(bundled_model_path())
    layout = model_layout(args.model)
    if args.json:
        print(json.dumps(layout.as_dict(), indent=2))
    else:
        print("\n".join(info_lines(layout, args.model)))
    return 0


def lod_rows(layout: ModelLayout) -> list[dict]:
    """Per stored LOD: octree level, bits, cells, corners, bytes of its chunks (with their 20-byte overhead),
    cumulative bytes (= lod_prefix_bytes) and whether those bytes are present."""
    grid = layout.structure["grid"]
    rows = []
    for k, lv in enumerate(grid["levels"]):
        own = [c for c in layout.chunks if c.lod == k]
        rows.append({"lod": k, "octree_level": lv["octree_level"], "bits": lv["bits"], "cells": lv["cells"],
                     "corners": lv["corners"], "bytes": sum(c.end - c.offset for c in own),
                     "payload": {c.kind: c.length for c in own}, "cumulative": layout.lod_prefix_bytes[k],
                     "present": layout.lod_prefix_bytes[k] <= layout.available_bytes})
    return rows


def info_lines(layout: ModelLayout, name: str) -> list[str]:
    """The human-readable report of `vbnf info`."""
    grid, scene, dec = layout.structure["grid"], layout.structure["scene"], layout.structure["decoder"]
    stored = len(grid["levels"])
    state = ("complete" if layout.available_bytes >= layout.total_bytes else
             f"partial: {layout.available_bytes} of {layout.total_bytes} bytes, {layout.complete_lods} of {stored} "
             f"LODs present")
    distinct = set(layout.bits)
    if distinct == {None}:
        bits_text = "fp16 features (dense)"
    else:
        bits_text = (f"{layout.bits[0]} bits" if len(distinct) == 1 else "/".join(map(str, layout.bits)) + " bits")
    bits_text += " per corner" if distinct != {None} else ""
    decoder_chunk = next(c for c in layout.chunks if c.kind == "decoder")
    meta_chunk = layout.chunks[0]
    overhead = HEADER_BYTES + (meta_chunk.end - meta_chunk.offset) + CHUNK_OVERHEAD * (len(layout.chunks) - 1)
    lines = [
        f"{name}: vbnf format v{layout.version}, {layout.byte_order}-endian, {layout.total_bytes} bytes ({state})",
        f"grid: {layout.grid_kind}, {bits_text}, feature width {layout.feature_dim}, {stored} LODs stored"
        f" of {layout.n_lods}, LOD 0 at octree level {layout.base_level}",
        f"scene: center ({', '.join(f'{v:g}' for v in scene['center'])}), half size {scene['half_size']:g}",
        f"decoder: {dec['architecture']} ({dec['dtype']}), {decoder_chunk.length} bytes",
        f"container: header {HEADER_BYTES} B + metadata chunk {meta_chunk.end - meta_chunk.offset} B + "
        f"{CHUNK_OVERHEAD} B per other chunk = {overhead} B; payload (theoretical size) "
        f"{layout.total_bytes - overhead} B",
        "",
        "bitrate ladder (bytes to read to render each LOD):",
        f"{'LOD':>3} {'level':>5} {'bits':>4} {'cells':>9} {'corners':>9} {'octree B':>9} {'rows B':>10}"
        f" {'LOD B':>10} {'cumulative B':>13} {'cum MB':>8}",
    ]
    for row in lod_rows(layout):
        p = row["payload"]
        rows_b = p.get("codebook", 0) + p.get("indices", 0) + p.get("features", 0)
        mark = "" if row["present"] else "  (missing)"
        lines.append(f"{row['lod']:>3} {row['octree_level']:>5} {'-' if row['bits'] is None else row['bits']:>4}"
                     f" {row['cells']:>9} {row['corners']:>9} {p.get('octree', 0):>9} {rows_b:>10} {row['bytes']:>10}"
                     f" {row['cumulative']:>13} {row['cumulative'] / 1e6:>8.3f}{mark}")
    for title, key in (("metrics at save time", "metrics"), ("provenance", "provenance")):
        value = layout.metadata.get(key)
        lines += ["", f"{title}:"] + (_flatten(value) if value else ["  (none stored)"])
    other = {k: v for k, v in layout.metadata.items() if k not in ("metrics", "provenance")}
    if other:
        lines += ["", "other metadata:"] + _flatten(other)
    return lines


def _flatten(value, prefix: str = "") -> list[str]:
    """Nested JSON -> '  a.b: value' lines."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    text = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
    if len(text) > 100:
        text = text[:97] + "..."
    return [f"  {prefix[:-1] or 'value'}: {text}"]
