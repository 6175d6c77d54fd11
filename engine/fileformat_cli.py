"""`vbnf info [MODEL] [--json]`: header, the bitrate ladder (bytes needed for each LOD), bitwidths, grid kind, the
metrics stored at save time, and which chunks are intact (every chunk's CRC is checked, one chunk in memory at a time).
Works on a partial download: it says how many bytes and LODs are there. Without MODEL it describes the bundled default
model (engine/bundled.py).
"""
from __future__ import annotations

import argparse
import json

from engine.fileformat import (CHUNK_OVERHEAD, HEADER_BYTES, ModelLayout, chunk_states, expected_chunks,
                               model_layout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="a .vbnf model file (default: the bundled default.vbnf)")
    parser.add_argument("--json", action="store_true", help="print the layout as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        from engine.bundled import bundled_model_path
        args.model = str(bundled_model_path())
    layout = model_layout(args.model)
    states = chunk_states(args.model, layout)
    if args.json:
        print(json.dumps({**layout.as_dict(), "chunk_states": states, "state": state_text(layout, states)}, indent=2))
    else:
        print("\n".join(info_lines(layout, args.model, states)))
    return 0


def state_text(layout: ModelLayout, states: list[str] | None = None) -> str:
    """One phrase for the header line: "complete", "partial: A of B bytes, k of n LODs present",
    or "damaged: ..." naming the first chunk whose CRC (or tag, LOD, length, decoding) is wrong and the LODs before
    it that are intact. states: from `chunk_states` (None: CRCs not checked)."""
    stored = len(layout.lod_prefix_bytes)
    if states is not None and "damaged" in states:
        i = states.index("damaged")
        bad = layout.chunks[i]
        intact = bad.lod if bad.lod is not None else 0
        where = f"the {bad.kind} chunk" + ("" if bad.lod is None else f" of LOD {bad.lod}")
        why = "fails its CRC check" + (" or does not decode" if bad.coding != "raw" else "")
        return (f"damaged: {where} (bytes {bad.offset}..{bad.end}) {why}; "
                f"{states.count('damaged')} of {len(states)} chunks damaged, {intact} of {stored} LODs intact")
    if layout.available_bytes < layout.total_bytes:
        return (f"partial: {layout.available_bytes} of {layout.total_bytes} bytes, {layout.complete_lods} of {stored} "
                f"LODs present")
    if layout.available_bytes > layout.total_bytes:
        return f"damaged: {layout.available_bytes - layout.total_bytes} unexpected bytes after the last chunk"
    return "complete"


def integrity_text(states: list[str]) -> str:
    """'all 14 chunks intact (CRC checked)' or counts per state, e.g. '9 intact, 1 damaged, 1 partial, 3 missing'."""
    if all(s == "intact" for s in states):
        return f"all {len(states)} chunks intact (CRC checked)"
    return ", ".join(f"{states.count(s)} {s}" for s in ("intact", "damaged", "partial", "missing") if s in states) + \
        f" of {len(states)} chunks (CRC checked)"


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


def info_lines(layout: ModelLayout, name: str, states: list[str] | None = None) -> list[str]:
    """The human-readable report of `vbnf info`. states: per chunk, from `chunk_states` (None: not checked)."""
    grid, scene, dec = layout.structure["grid"], layout.structure["scene"], layout.structure["decoder"]
    stored = len(grid["levels"])
    state = state_text(layout, states)
    damaged_lods = {c.lod for c, s in zip(layout.chunks, states or []) if s == "damaged"}
    distinct = set(layout.bits)
    if distinct == {None}:
        bits_text = "fp16 features (dense)"
    else:
        bits_text = (f"{layout.bits[0]} bits" if len(distinct) == 1 else "/".join(map(str, layout.bits)) + " bits")
    bits_text += " per corner" if distinct != {None} else ""
    decoder_chunk = next(c for c in layout.chunks if c.kind == "decoder")
    meta_chunk = layout.chunks[0]
    overhead = HEADER_BYTES + (meta_chunk.end - meta_chunk.offset) + CHUNK_OVERHEAD * (len(layout.chunks) - 1)
    theoretical = sum(length for _, _, length in expected_chunks(layout.structure["grid"]))
    coded = [c for c in layout.chunks if c.coding != "raw"]
    compressed_text = (f"; {len(coded)} octree chunks LZMA-compressed, {sum(c.length for c in coded)} B stored"
                       if coded else "")
    lines = [
        f"{name}: vbnf format v{layout.version}, {layout.byte_order}-endian, {layout.total_bytes} bytes ({state})",
        f"grid: {layout.grid_kind}, {bits_text}, feature width {layout.feature_dim}, {stored} LODs stored"
        f" of {layout.n_lods}, LOD 0 at octree level {layout.base_level}",
        f"scene: center ({', '.join(f'{v:g}' for v in scene['center'])}), half size {scene['half_size']:g}",
        f"decoder: {dec['architecture']} ({dec['dtype']}), {decoder_chunk.length} bytes",
        *([f"chunks: {integrity_text(states)}"] if states is not None else []),
        f"container: header {HEADER_BYTES} B + metadata chunk {meta_chunk.end - meta_chunk.offset} B + "
        f"{CHUNK_OVERHEAD} B per other chunk = {overhead} B; payload {layout.total_bytes - overhead} B "
        f"(theoretical size) {theoretical} B{compressed_text}",
        "",
        "bitrate ladder (bytes to read to render each LOD):",
        f"{'LOD':>3} {'level':>5} {'bits':>4} {'cells':>9} {'corners':>9} {'octree B':>9} {'rows B':>10}"
        f" {'LOD B':>10} {'cumulative B':>13} {'cum MB':>8}",
    ]
    for row in lod_rows(layout):
        p = row["payload"]
        rows_b = p.get("codebook", 0) + p.get("indices", 0) + p.get("features", 0)
        mark = "" if row["present"] else "  (missing)"
        mark = "  (damaged)" if row["lod"] in damaged_lods else mark
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
