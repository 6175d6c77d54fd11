"""Building hostile .vbnf files whose every CRC, length field and chunk table entry is valid: split a real file into
its metadata document and chunk payloads, edit them, join them again. Used by tests/test_bad_files.py (one generator
per bad-input class), tests/test_fuzz_format.py (semantic fuzzing) and bench/bad_input.py.
"""
from __future__ import annotations

import json
import struct
import zlib


from engine.field import NeuralField
from engine.fileformat import (HEADER_BYTES, NO_LOD, TAGS, decode_metadata_payload, decoder_bytes, expected_chunks,
                               save_model_bytes)
from fields import sphere_shell_octree

KIND_BY_TAG = {tag: kind for kind, tag in TAGS.items()}


def small_model_bytes(kind: str = "vq", max_level: int = 4, base_level: int = 1, feature_dim: int = 4, bits: int = 3,
                      seed: int = 0, metadata: dict | None = None) -> bytes:
    """A real small model: a sphere-shell octree to `max_level`, LOD 0 at `base_level`."""
    octree = sphere_shell_octree(max_level)
    nf = NeuralField(octree, base_level, kind, feature_dim=feature_dim, bits=None if kind == "dense" else bits,
                     seed=seed)
    meta = {"metrics": {"psnr": 25.0}, "provenance": {"dataset": "forge", "steps": 1}}
    return save_model_bytes(nf.freeze(), {**meta, **(metadata or {})})


def split_file(data: bytes) -> tuple[dict, list[list]]:
    """(metadata document {"structure", "metadata"}, [[kind, lod | None, payload bytes], ...] after the metadata) of
    a complete little-endian file."""
    pos = HEADER_BYTES
    tag, lod, length = struct.unpack_from("<4sIQ", data, pos)
    doc = json.loads(decode_metadata_payload(data[pos + 16:pos + 16 + length]))
    pos += 20 + length
    chunks = []
    while pos < len(data):
        tag, lod, length = struct.unpack_from("<4sIQ", data, pos)
        chunks.append([KIND_BY_TAG[tag], None if lod == NO_LOD else lod, data[pos + 16:pos + 16 + length]])
        pos += 20 + length
    return doc, chunks


def chunk_bytes(tag: bytes, lod: int, payload: bytes) -> bytes:
    head = struct.pack("<4sIQ", tag, lod, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))


def join_file(doc: dict, chunks: list[list], fix_table: bool = True, compress: bool = True) -> bytes:
    """The file for `doc` and `chunks` with every length and CRC correct; fix_table: rewrite structure.chunks from
    the chunks given (so the table always agrees with the bytes)."""
    if fix_table:
        doc["structure"]["chunks"] = [{"kind": k, "lod": lod, "length": len(p)} for k, lod, p in chunks]
    head = b"VBNF" + struct.pack("<HHI", 0xFEFF, 1, 0)
    head += struct.pack("<I", zlib.crc32(head))
    meta = json.dumps(doc, separators=(",", ":")).encode()
    parts = [head, chunk_bytes(b"META", NO_LOD, zlib.compress(meta) if compress else meta)]
    parts += [chunk_bytes(TAGS[k], NO_LOD if lod is None else lod, p) for k, lod, p in chunks]
    return b"".join(parts)


def resize_payloads(doc: dict, chunks: list[list], fill: int = 0) -> list[list]:
    """Chunks resized (padded with `fill` or cut) to the lengths the grid block of `doc` implies, so a count edited
    in the metadata is backed by bytes of the right length (an octree payload grows with 0xFF masks by default
    when fill is 255). Chunks the grid does not list are dropped; missing ones are added."""
    want = expected_chunks(doc["structure"]["grid"])
    have = {(k, lod): p for k, lod, p in chunks}
    out = []
    for kind, lod, length in want:
        p = have.get((kind, lod), b"")
        out.append([kind, lod, (p + bytes([fill]) * max(0, length - len(p)))[:length]])
    return out


def full_octree_masks(levels: int) -> bytes:
    """Child masks of a full octree over levels 0..levels-1 (every node has 8 children): sum 8^l bytes of 0xFF."""
    return b"\xff" * sum(8 ** l for l in range(levels))


def chain_masks(levels: int) -> bytes:
    """Child masks of a single-cell chain over levels 0..levels-1 (each node has one child, octant 0)."""
    return b"\x01" * levels


def dense_features_payload(n_corners: int, feature_dim: int) -> bytes:
    """n_corners x F fp16 zeros (finite)."""
    return bytes(2 * n_corners * feature_dim)


def decoder_payload(feature_dim: int) -> bytes:
    return bytes(decoder_bytes(feature_dim))


def full_octree_file(level: int, kind: str = "vq", bits: int = 1, corners: int | None = None,
                     feature_dim: int = 4) -> bytes:
    """A one-LOD model whose LOD 0 is the full grid at octree `level` (8^level cells, child masks all 0xFF).

    corners: what LOD 0 claims (default: the true count (2^level + 1)^3, giving a valid model); the feature rows are
    sized to the claim, so every length and CRC agrees with it."""
    doc, chunks = split_file(small_model_bytes("dense" if kind == "dense" else "vq", feature_dim=feature_dim,
                                               bits=bits if kind != "dense" else 3))
    n_corners = (2 ** level + 1) ** 3 if corners is None else corners
    grid = doc["structure"]["grid"]
    grid.update(base_level=level, n_lods=1, octree_nodes=[8 ** l for l in range(level + 1)])
    grid["levels"] = [{"lod": 0, "octree_level": level, "bits": None if kind == "dense" else bits,
                       "feature_width": feature_dim, "cells": 8 ** level, "corners": n_corners,
                       "codebook_rows": 0 if kind == "dense" else 1 << bits}]
    decoder = next(p for k, _, p in chunks if k == "decoder")
    out = [["decoder", None, decoder], ["octree", 0, full_octree_masks(level)]]
    if kind == "dense":
        out.append(["features", 0, dense_features_payload(n_corners, feature_dim)])
    else:
        from engine.bitpack import packed_size
        out += [["codebook", 0, bytes(2 * feature_dim << bits)], ["indices", 0, bytes(packed_size(n_corners, bits))]]
    return join_file(doc, out)


# ---------------------------------------------------------------------------------------------------------------
# One generator per bad-input class of the audit (each returns the bytes of a file whose CRCs and lengths are valid)


def f1_full_masks_few_corners(level: int = 8) -> bytes:
    """F1: child masks of a full octree to `level` (8^level cells at LOD 0) while LOD 0 claims 8 corners; every CRC,
    length and popcount is valid. level 8: a 2.4 MB file that made the old loader build 16.7 M cells (9 GB)."""
    return full_octree_file(level, kind="dense", corners=8, feature_dim=1)


def f1_full_masks_min_corners(level: int = 7, bits: int = 1) -> bytes:
    """F1, the cheapest claim the validation allows: as many corners as cells (the true count is (2^l + 1)^3), with
    1-bit indices, so the claim is backed by the fewest bytes; the octree must be built to find the mismatch."""
    return full_octree_file(level, kind="vq", bits=bits, corners=8 ** level)


def f2_raised_n_lods(n_lods: int = 19, kind: str = "vq") -> bytes:
    """F2 (loader side): a small real model whose grid.n_lods is raised (the stored LODs are unchanged)."""
    doc, chunks = split_file(small_model_bytes(kind))
    doc["structure"]["grid"]["n_lods"] = n_lods
    return join_file(doc, chunks)


def f2_chain(depth: int = 20, base_level: int = 1, kind: str = "vq") -> bytes:
    """F2 (loader side): a single-cell chain from the root to octree level `depth` (one occupied cell per level,
    child octant 0), LOD 0 at `base_level` and one LOD per level below it: a file of a few kB with depth - base + 1
    LODs."""
    doc, chunks = split_file(small_model_bytes(kind, bits=1))
    grid = doc["structure"]["grid"]
    lods = depth - base_level + 1
    grid.update(base_level=base_level, n_lods=lods, octree_nodes=[1] * (depth + 1))
    f = grid["feature_width"]
    grid["levels"] = [{"lod": k, "octree_level": base_level + k, "bits": None if kind == "dense" else 1,
                       "feature_width": f, "cells": 1, "corners": 8,
                       "codebook_rows": 0 if kind == "dense" else 2} for k in range(lods)]
    decoder = next(p for k, _, p in chunks if k == "decoder")
    out = [["decoder", None, decoder]]
    for k in range(lods):
        out.append(["octree", k, chain_masks(base_level) if k == 0 else b"\x01"])
        if kind == "dense":
            out.append(["features", k, dense_features_payload(8, f)])
        else:
            out += [["codebook", k, bytes(4 * f)], ["indices", k, b"\x00"]]
    return join_file(doc, out)


def f4_scene_box(half_size=5e-324, center=(1e30, 0.0, 0.0)) -> bytes:
    """F4: a small real model with the scene box replaced (default: a denormal half size and a far center)."""
    doc, chunks = split_file(small_model_bytes("vq"))
    doc["structure"]["scene"] = {"center": list(center), "half_size": half_size}
    return join_file(doc, chunks)


def f6_dense_without_bits() -> bytes:
    """F6: a dense model whose levels have no "bits" key (the format's dense levels say bits null)."""
    doc, chunks = split_file(small_model_bytes("dense"))
    for lv in doc["structure"]["grid"]["levels"]:
        del lv["bits"]
    return join_file(doc, chunks)


F7_BAD_METADATA = {
    "metrics_list": {"metrics": [1, 2, 3]},
    "metrics_string": {"metrics": "psnr 30"},
    "metrics_null": {"metrics": None},
    "metrics_bad_values": {"metrics": {"psnr": "high", "test_per_lod": [{"lod": "0", "psnr": None}, 7],
                                       "val_per_lod": {"lod": 0}}},
    "conversions_int": {"conversions": 3},
    "conversions_bad_entries": {"conversions": [1, "x", None]},
    "provenance_list": {"provenance": ["a"]},
    "dataset_dict": {"dataset": {"path": 1}},
}
"""F7: free-form metadata of the wrong type, by name."""


def f7_bad_metadata(name: str, kind: str = "vq") -> bytes:
    """F7: a small real model whose free-form metadata is F7_BAD_METADATA[name] (replacing the keys it names)."""
    doc, chunks = split_file(small_model_bytes(kind))
    doc["metadata"].update(F7_BAD_METADATA[name])
    return join_file(doc, chunks)
