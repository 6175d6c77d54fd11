"""The .vbnf model file: a fixed header, a JSON metadata chunk, then the decoder and every LOD, coarse to fine.

Byte layout (docs/FORMAT.md has the full table; all integers in the header's byte order, little-endian when written):

    header   16 B   magic "VBNF" | byte-order mark u16 0xFEFF | version u16 | reserved u32 = 0 | CRC32 of bytes 0..11
    chunk    tag 4 B | lod u32 (0xFFFFFFFF: none) | payload length u64 | payload | CRC32 u32 of tag..payload
    chunks   META (JSON) | DECO | for each LOD k: OCTR(k), then CODE(k) + INDX(k) (vq, random, kmeans)
             or FEAT(k) (dense)

Version 2 (written since 2026-12-02) may store an octree chunk LZMA-compressed (its chunk table entry says
"coding": "lzma"; the writer does so where that is smaller: about 40% smaller on trained models). Decoded at load,
so prefixes and the GPU's random access are unchanged. Version 1 files (never compressed) still load.

Prefix rule: any prefix that ends on a chunk boundary after the first LOD's last chunk is a valid coarser model. The
metadata lists every chunk's kind, LOD and length, so a reader knows the whole bitrate ladder from the first few
hundred bytes, and every length field is checked against it (and against the structure) before anything is read.

Every malformed input raises one `FormatError` (one line: the source, the problem, the byte offset); a file that ends
after its first LOD but before its last loads the complete LODs with a `TruncatedModelWarning`. Every count is
validated against the others and against engine/limits.py before anything is built, and the memory the counts imply
is bounded by the file's size (`load_working_bytes`; docs/FORMAT.md "Limits and the memory bound").
"""
from __future__ import annotations

import dataclasses
import json
import lzma
import math
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from engine import decoder as decoder_arch
from engine import limits
from engine.bitpack import pack_bits, packed_size, unpack_bits
from engine.errors import FormatError, VbnfError, shown
from engine.field import InferenceField, check_decoder
from engine.grids import LevelRows
from engine.metadata import sanitize_metadata
from engine.octree import POPCOUNT8, cell_corners, octree_from_child_masks

MAGIC = b"VBNF"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added compressed octree chunks (CODINGS); a version 1 file is a version 2 file without them."""
CODINGS = ("raw", "lzma")
"""How a chunk's payload is stored: as is, or (octree chunks, version 2) LZMA2 with LZMA_FILTERS."""
COMPRESSIBLE_KINDS = ("octree",)
"""Chunks the writer compresses where that is smaller. Indices are not: trained vq indices use their rows about
evenly (their order-0 entropy is within 2% of b bits on lego), so coding them saves nothing worth a decode."""
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]
"""Raw LZMA2 stream settings (the reader's; the writer adds the strongest preset). A 1 MiB window: the decoder
allocates it, whatever the file says."""
BYTE_ORDER_MARK = 0xFEFF
HEADER_BYTES = 16
CHUNK_HEADER_BYTES = 16
CHUNK_TRAILER_BYTES = 4
CHUNK_OVERHEAD = CHUNK_HEADER_BYTES + CHUNK_TRAILER_BYTES
NO_LOD = 0xFFFFFFFF
# The limits live in engine/limits.py (one place); these names are kept for the modules that import them from here.
MAX_METADATA_BYTES = limits.MAX_METADATA_BYTES
MAX_METADATA_DEPTH = limits.MAX_METADATA_DEPTH
MAX_OCTREE_LEVEL = limits.MAX_OCTREE_LEVEL
MAX_FEATURE_DIM = limits.MAX_FEATURE_DIM
MAX_BITS = limits.MAX_BITS
GRID_KINDS = ("dense", "vq", "random", "kmeans")
DECODER_ARCHITECTURE = "vbnf-mlp-v1"

TAGS = {"metadata": b"META", "decoder": b"DECO", "octree": b"OCTR", "codebook": b"CODE", "indices": b"INDX",
        "features": b"FEAT"}
KINDS_BY_TAG = {tag: kind for kind, tag in TAGS.items()}


class TruncatedModelWarning(UserWarning):
    """The file ends inside a LOD it was asked for; the complete coarser LODs were loaded. The message is one line,
    "SOURCE: partial: A of B bytes, k of n LODs present (...)"; the `vbnf` command prints it as a note."""


@dataclass
class ChunkInfo:
    """One chunk of a file. offset: byte where its 16-byte header starts; length: payload bytes;
    end: offset + 16 + length + 4 (where the next chunk starts)."""

    kind: str
    lod: int | None
    offset: int
    length: int
    end: int
    coding: str = "raw"
    """"raw" or "lzma" (CODINGS); `length` counts the stored (compressed) bytes."""


@dataclass
class ModelLayout:
    """What the header and the metadata chunk say about a file (the other chunks are not read, so an incomplete file
    has a layout too).

    version, byte_order ("little" | "big"); structure: the format's own JSON block (scene, decoder, grid, chunks);
    metadata: the free-form JSON (provenance, metrics); chunks: every chunk, metadata first;
    lod_prefix_bytes[k]: bytes needed to render LOD k (end of its last chunk); total_bytes: the complete file;
    available_bytes: bytes present in the source; complete_lods: LODs whose chunks all lie within those bytes
    (CRCs not checked here).
    """

    version: int
    byte_order: str
    grid_kind: str
    base_level: int
    n_lods: int
    feature_dim: int
    bits: list[int | None]
    structure: dict
    metadata: dict
    chunks: list[ChunkInfo]
    lod_prefix_bytes: list[int]
    total_bytes: int
    available_bytes: int
    complete_lods: int

    def as_dict(self) -> dict:
        """JSON-serialisable form (for `vbnf info --json`)."""
        out = dict(self.__dict__)
        out["chunks"] = [dict(c.__dict__) for c in self.chunks]
        return out


# ---------------------------------------------------------------------------------------------------------------
# Sizes


def decoder_bytes(feature_dim: int) -> int:
    """Bytes of the fp16 decoder for feature width F."""
    return 2 * sum(math.prod(s) for s in decoder_arch.decoder_shapes(feature_dim).values())


def theoretical_bytes(field: InferenceField) -> int:
    """The information the model needs, without any container overhead (see docs/FORMAT.md):

    per held LOD: ceil(n_corners * b / 8) index bytes + 2^b * F * 2 codebook bytes (or n_corners * F * 2 for dense);
    plus 1 child-mask byte per occupied node of every octree level except the finest held one (levels 0..base+K-2);
    plus the fp16 decoder. Not counted: header, metadata JSON, the 20 bytes of length/tag/CRC per chunk.
    """
    k_held = len(field.levels)
    total = decoder_bytes(field.feature_dim)
    total += sum(int(field.octree.cells[l].numel()) for l in range(field.base_level + k_held - 1))
    for rows in field.levels:
        total += _rows_bytes(rows, field.feature_dim)
    return total


def load_working_bytes(grid: dict, lods: int) -> int:
    """Upper bound of the memory (bytes) the loader needs, beyond limits.LOAD_ALLOWANCE_BYTES, to build LOD
    0..lods-1 of a validated grid block: per cell of octree levels 0..base_level+lods-1, per corner of those LODs, and
    4 bytes per payload byte (fp16 rows become float32; the file's bytes are held once). The loader refuses a file
    for which this exceeds limits.LOAD_BYTES_PER_FILE_BYTE x the bytes holding those LODs (docs/FORMAT.md)."""
    base = grid["base_level"]
    cells = sum(grid["octree_nodes"][:base + lods])
    corners = sum(lv["corners"] for lv in grid["levels"][:lods])
    payload = sum(length for _, lod, length in expected_chunks(grid) if lod is None or lod < lods)
    return limits.LOAD_BYTES_PER_CELL * cells + limits.LOAD_BYTES_PER_CORNER * corners + 4 * payload


def _rows_bytes(rows: LevelRows, feature_dim: int) -> int:
    if rows.features is not None:
        return rows.n_corners * feature_dim * 2
    return packed_size(rows.n_corners, rows.bits) + (1 << rows.bits) * feature_dim * 2


# ---------------------------------------------------------------------------------------------------------------
# Writing


def save_model(path: str | os.PathLike, field: InferenceField, metadata: dict | None = None) -> int:
    """Writes `field` to `path` atomically (temp file in the same folder, fsync, os.replace); returns bytes written.

    metadata: JSON-serialisable facts (provenance, metrics) merged over `field.metadata`. The stored tensors are fp16,
    so the model that loads back is the fp16-rounded one. A write failure raises VbnfError naming the path and leaves
    any previous file at `path` untouched.
    """
    data = save_model_bytes(field, metadata)
    write_atomic(path, data)
    return len(data)


def decode_metadata_payload(payload: bytes) -> bytes:
    """The metadata chunk's JSON text: zlib-compressed as vbnf writes it (about 3x smaller, which keeps the container
    under 2% of a small model; a zlib stream starts with byte 0x78), or else plain JSON text. Raises ValueError;
    never inflates past MAX_METADATA_BYTES."""
    if payload[:1] != b"\x78":
        return payload
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, MAX_METADATA_BYTES + 1)
    except zlib.error as err:
        raise ValueError(f"compressed metadata is damaged ({err})") from None
    if len(text) > MAX_METADATA_BYTES or inflater.unconsumed_tail:
        raise ValueError(f"metadata inflates to more than the {MAX_METADATA_BYTES}-byte limit")
    if not inflater.eof or inflater.unused_data:
        raise ValueError("compressed metadata is truncated or has trailing bytes")
    return text


def save_model_bytes(field: InferenceField, metadata: dict | None = None, byte_order: str = "<") -> bytes:
    """The file's bytes for `field` (what `save_model` writes). byte_order: "<" (written by vbnf) or ">"."""
    if byte_order not in ("<", ">"):
        raise ValueError(f"byte_order must be '<' or '>', got {byte_order!r}")
    e = byte_order
    structure, payloads = _field_payloads(field, e)
    user = {**field.metadata, **(metadata or {})}
    if _json_depth(user) > MAX_METADATA_DEPTH:
        raise VbnfError(f"model metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    try:
        meta_json = json.dumps({"structure": structure, "metadata": user}, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise VbnfError(f"model metadata is not JSON-serialisable: {err}") from None
    if len(meta_json) > MAX_METADATA_BYTES:
        raise VbnfError(f"model metadata is {len(meta_json)} bytes of JSON, more than the {MAX_METADATA_BYTES} allowed")
    parts = [_header_bytes(e), _chunk_bytes(e, b"META", NO_LOD, zlib.compress(meta_json, 9))]
    parts += [_chunk_bytes(e, TAGS[kind], NO_LOD if lod is None else lod, payload) for kind, lod, payload in payloads]
    return b"".join(parts)


def _stored(kind: str, payload: bytes) -> tuple[str, bytes]:
    """(coding, stored bytes) of a chunk payload: LZMA-compressed for the COMPRESSIBLE_KINDS where that is smaller."""
    if kind in COMPRESSIBLE_KINDS and payload:
        packed = lzma.compress(payload, format=lzma.FORMAT_RAW,
                               filters=[{**LZMA_FILTERS[0], "preset": 9 | lzma.PRESET_EXTREME}])
        if len(packed) < len(payload):
            return "lzma", packed
    return "raw", payload


def _decoded(payload: memoryview, chunk: ChunkInfo, raw_length: int, source: str) -> memoryview:
    """A chunk's payload as the format defines it (`raw_length` bytes), from its stored bytes."""
    if chunk.coding == "raw":
        return payload
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    try:
        out = inflater.decompress(bytes(payload), max_length=raw_length + 1)
    except lzma.LZMAError as err:
        raise FormatError(f"{source}: the compressed {chunk.kind} chunk of LOD {chunk.lod} is damaged ({err}) at "
                          f"byte {chunk.offset + CHUNK_HEADER_BYTES}") from None
    if len(out) != raw_length or not inflater.eof or inflater.unused_data:
        raise FormatError(f"{source}: the compressed {chunk.kind} chunk of LOD {chunk.lod} does not decode to "
                          f"exactly the {raw_length} bytes its grid needs at byte {chunk.offset + CHUNK_HEADER_BYTES}")
    return memoryview(out)


DECODE_PIECE_BYTES = 1 << 20
"""`_decodes_whole` decodes a chunk in pieces of this size: memory stays there whatever the chunk claims."""


def _decodes_whole(payload: memoryview, chunk: ChunkInfo, raw_length: int) -> bool:
    """Whether a chunk's stored bytes decode to exactly `raw_length` bytes (always, for a raw chunk), in pieces of
    DECODE_PIECE_BYTES that are counted and dropped. A chunk claiming to expand more than
    limits.LOAD_BYTES_PER_FILE_BYTE times (the loader's own bound) is not decoded: it is not a model's octree."""
    if chunk.coding == "raw":
        return True
    if raw_length > limits.LOAD_BYTES_PER_FILE_BYTE * max(len(payload), 1):
        return False
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    try:
        total = len(inflater.decompress(bytes(payload), max_length=DECODE_PIECE_BYTES))
        while not inflater.eof and total <= raw_length:
            if inflater.needs_input:  # every stored byte read and the stream has not ended
                return False
            total += len(inflater.decompress(b"", max_length=DECODE_PIECE_BYTES))
    except lzma.LZMAError:
        return False
    return inflater.eof and total == raw_length and not inflater.unused_data


def _header_bytes(e: str) -> bytes:
    head = MAGIC + struct.pack(e + "HHI", BYTE_ORDER_MARK, FORMAT_VERSION, 0)
    return head + struct.pack(e + "I", zlib.crc32(head))


def _chunk_bytes(e: str, tag: bytes, lod: int, payload: bytes) -> bytes:
    head = struct.pack(e + "4sIQ", tag, lod, len(payload))
    return head + payload + struct.pack(e + "I", zlib.crc32(payload, zlib.crc32(head)))


def _fp16_bytes(t: torch.Tensor, e: str, what: str) -> bytes:
    half = t.detach().float().cpu().to(torch.float16)
    if not bool(torch.isfinite(half).all()):
        raise VbnfError(f"cannot save the model: {what} holds values that are not finite in fp16 (|x| > 65504 or NaN)")
    return half.numpy().astype(e + "f2").tobytes()


def _field_payloads(field: InferenceField, e: str) -> tuple[dict, list[tuple[str, int | None, bytes]]]:
    """(structure JSON block, [(kind, lod, stored payload)] after the metadata chunk) for `field`."""
    kind, base, k_held = field.grid_kind, field.base_level, len(field.levels)
    f = field.feature_dim
    if kind not in GRID_KINDS:
        raise ValueError(f"cannot save grid kind {kind!r}: expected one of {', '.join(GRID_KINDS)}")
    if k_held < 1 or field.n_lods < k_held:
        raise ValueError(f"cannot save a field holding {k_held} LODs of {field.n_lods}")
    if base + k_held - 1 > field.octree.max_level or base + field.n_lods - 1 > MAX_OCTREE_LEVEL:
        raise ValueError(f"octree of {field.octree.max_level + 1} levels cannot hold base level {base} + {k_held} LODs"
                         f" (finest allowed level {MAX_OCTREE_LEVEL})")
    if field.octree.cells[0].numel() != 1:
        raise ValueError("cannot save an octree without its root cell")
    if not 1 <= f <= MAX_FEATURE_DIM:
        raise ValueError(f"feature width {f} outside 1..{MAX_FEATURE_DIM}")
    check_decoder(field.decoder, f)
    finest = base + k_held - 1
    masks = [field.octree.child_mask[l].detach().cpu().to(torch.uint8) for l in range(finest)]
    for l, mask in enumerate(masks):
        if int(POPCOUNT8[mask.long()].sum()) != field.octree.cells[l + 1].numel():
            raise ValueError(f"octree level {l}: child masks do not match the {field.octree.cells[l + 1].numel()} "
                             f"cells of level {l + 1}")
    nodes = [int(field.octree.cells[l].numel()) for l in range(finest + 1)]

    decoder = b"".join(_fp16_bytes(field.decoder[name], e, f"decoder tensor {name}")
                       for name in decoder_arch.decoder_shapes(f))
    payloads: list[tuple[str, int | None, bytes]] = [("decoder", None, decoder)]
    levels = []
    for k, rows in enumerate(field.levels):
        n_cells = nodes[base + k]
        n_corners = rows.n_corners
        if k < len(field.corners) and field.corners[k].numel() and int(field.corners[k].max()) + 1 != n_corners:
            raise ValueError(f"LOD {k}: {n_corners} feature rows but its corner table has "
                             f"{int(field.corners[k].max()) + 1} corners")
        octree_levels = range(base) if k == 0 else [base + k - 1]
        payloads.append(("octree", k, b"".join(masks[l].numpy().tobytes() for l in octree_levels)))
        if kind == "dense":
            if rows.features is None or tuple(rows.features.shape) != (n_corners, f):
                raise ValueError(f"LOD {k}: a dense grid needs features [{n_corners}, {f}]")
            payloads.append(("features", k, _fp16_bytes(rows.features, e, f"features of LOD {k}")))
            bits = None
        else:
            bits = rows.bits
            if rows.codebook is None or rows.indices is None or not bits or not 1 <= bits <= MAX_BITS:
                raise ValueError(f"LOD {k}: a {kind} grid needs a codebook, indices and bits in 1..{MAX_BITS}")
            if tuple(rows.codebook.shape) != (1 << bits, f):
                raise ValueError(f"LOD {k}: codebook shape {tuple(rows.codebook.shape)}, expected {(1 << bits, f)}")
            payloads.append(("codebook", k, _fp16_bytes(rows.codebook, e, f"codebook of LOD {k}")))
            payloads.append(("indices", k, pack_bits(rows.indices, bits)))
        levels.append({"lod": k, "octree_level": base + k, "bits": bits, "feature_width": f, "cells": n_cells,
                       "corners": n_corners, "codebook_rows": 0 if bits is None else 1 << bits})
    structure = {
        "scene": {"center": [float(v) for v in field.scene_center.detach().cpu().reshape(-1)],
                  "half_size": float(field.scene_half_size)},
        "decoder": {"architecture": DECODER_ARCHITECTURE, "feature_dim": f, "hidden": decoder_arch.HIDDEN,
                    "geo_dim": decoder_arch.GEO_DIM, "dir_freqs": decoder_arch.DIR_FREQS, "dtype": "float16"},
        "grid": {"kind": kind, "base_level": base, "n_lods": field.n_lods, "feature_width": f,
                 "octree_nodes": nodes, "levels": levels},
    }
    stored = [(kind_, lod, *_stored(kind_, p)) for kind_, lod, p in payloads]
    structure["chunks"] = [{"kind": kind_, "lod": lod, "length": len(p), **({} if coding == "raw" else
                                                                           {"coding": coding})}
                           for kind_, lod, coding, p in stored]
    return structure, [(kind_, lod, p) for kind_, lod, _, p in stored]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temp file `.NAME.tmp-PID` beside `path`, fsyncs it, renames it over `path`, fsyncs the
    folder (engine/atomic.py). On any failure (including KeyboardInterrupt and SIGTERM) the temp file is removed and
    `path` is untouched; the next write removes temp files of writers killed outright. OS errors become a VbnfError
    naming the path."""
    from engine.atomic import write_atomic_with
    write_atomic_with(path, lambda f: _write_all(f.fileno(), data))


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_model_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The first `max_bytes` bytes (all when None) of a regular file; FormatError naming the path otherwise."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise FormatError(f"{path}: is a directory, not a .vbnf model file")
        if not stat.S_ISREG(info.st_mode):
            raise FormatError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            return f.read() if max_bytes is None else f.read(max_bytes)
    except FormatError:
        raise
    except OSError as err:
        raise FormatError(f"cannot read {path}: {err.strerror or err}") from None


def load_model(path: str | os.PathLike, max_bytes: int | None = None, max_lod: int | None = None,
               device: torch.device | str = "cpu") -> InferenceField:
    """Loads a .vbnf file: every LOD, or the LODs that fit in the first `max_bytes` bytes, up to LOD `max_lod`.

    Reads only the first `max_bytes` bytes of the file. Raises FormatError (one line with the path and byte offset)
    for any malformed input or when not even LOD 0 fits; warns TruncatedModelWarning when the file ends inside a LOD
    that was asked for (the complete LODs before it are returned).
    """
    _check_limits(max_bytes, max_lod)
    data = read_model_file(path, max_bytes)
    return load_model_bytes(data, max_lod=max_lod, source=os.fspath(path), max_bytes=max_bytes).to(device)


def load_model_bytes(data: bytes | bytearray | memoryview, max_lod: int | None = None, source: str = "<bytes>",
                     max_bytes: int | None = None) -> InferenceField:
    """`load_model` from memory: `data` is the file or any prefix of it. Returns a CPU InferenceField.

    max_lod / max_bytes: load at most LOD 0..max_lod / the LODs whose prefix fits in max_bytes (no warning for what
    they leave out). The field holds LOD 0..K-1 with K the LODs loaded; its octree holds levels 0..base_level+K-1;
    n_lods is the complete model's.
    """
    _check_limits(max_bytes, max_lod)
    view = memoryview(data).cast("B")
    e, version = _parse_header(view, source)
    structure, user, meta_end = _parse_metadata(view, e, version, source)
    plan = _chunk_plan(structure, meta_end, source)
    chunks, prefix = plan
    n_stored = len(prefix)
    wanted = n_stored if max_lod is None else min(n_stored, max_lod + 1)
    if max_bytes is not None:
        wanted = min(wanted, sum(1 for p in prefix if p <= max_bytes))
    if wanted == 0:
        raise FormatError(f"{source}: max_bytes={max_bytes} is below the {prefix[0]} bytes that LOD 0 needs")

    grid = structure["grid"]
    kind, base, f = grid["kind"], grid["base_level"], grid["feature_width"]
    nodes = grid["octree_nodes"]
    present = min(wanted, sum(1 for p in prefix if p <= len(view)))
    if present:  # the memory bound, from validated counts only, before anything is built
        need, held = load_working_bytes(grid, present), prefix[present - 1]
        if need > limits.LOAD_BYTES_PER_FILE_BYTE * held:
            raise FormatError(f"{source}: grid.octree_nodes and grid.levels claim {sum(nodes[:base + present])} cells"
                              f" and {sum(lv['corners'] for lv in grid['levels'][:present])} corners for LOD "
                              f"0..{present - 1}, needing {need} bytes of memory, more than "
                              f"{limits.LOAD_BYTES_PER_FILE_BYTE} x the {held} bytes that hold them "
                              f"(engine/limits.py) at byte {HEADER_BYTES + CHUNK_HEADER_BYTES}")
    decoder = None
    masks: list[torch.Tensor] = []
    levels: list[dict] = []
    loaded = 0
    for chunk in chunks[1:]:
        if chunk.lod is not None and chunk.lod >= wanted:
            break
        if chunk.end > len(view):
            break
        payload = _checked_payload(view, chunk, e, source)
        if chunk.kind == "decoder":
            decoder = _decoder_from_payload(payload, f, e, chunk, source)
        elif chunk.kind == "octree":
            octree_levels = range(base) if chunk.lod == 0 else [base + chunk.lod - 1]
            payload = _decoded(payload, chunk, sum(nodes[l] for l in octree_levels), source)
            masks += _masks_from_payload(payload, octree_levels, nodes, chunk, source)
            levels.append({})
        elif chunk.kind == "codebook":
            bits = grid["levels"][chunk.lod]["bits"]
            levels[-1]["codebook"] = _fp16_from_payload(payload, (1 << bits, f), e, chunk, source)
        elif chunk.kind == "indices":
            info = grid["levels"][chunk.lod]
            levels[-1]["indices"] = unpack_bits(payload, info["corners"], info["bits"])
            levels[-1]["bits"] = info["bits"]
        else:
            levels[-1]["features"] = _fp16_from_payload(payload, (grid["levels"][chunk.lod]["corners"], f), e,
                                                        chunk, source)
        if chunk.lod is not None and chunk.end == prefix[chunk.lod]:
            loaded = chunk.lod + 1
    if loaded == 0:
        end = min(c.end for c in chunks[1:] if c.end > len(view))
        raise FormatError(f"{source}: file ends at byte {len(view)} before LOD 0 is complete (it needs {prefix[0]} "
                          f"bytes, the chunk there ends at byte {end}): nothing renderable")
    if loaded < wanted:
        cut = next(c for c in chunks if c.end > len(view))
        where = "before" if len(view) <= cut.offset else "inside"
        warnings.warn(f"{source}: partial: {len(view)} of {chunks[-1].end} bytes, {loaded} of {n_stored} LODs "
                      f"present (the file ends {where} the {cut.kind} chunk of LOD {cut.lod}, bytes "
                      f"{cut.offset}..{cut.end}); loaded LOD 0..{loaded - 1} of {n_stored}", TruncatedModelWarning,
                      stacklevel=2)
    if loaded == n_stored and wanted == n_stored and len(view) > chunks[-1].end:
        raise FormatError(f"{source}: {len(view) - chunks[-1].end} unexpected bytes after the last chunk "
                          f"at byte {chunks[-1].end}")

    levels = levels[:loaded]
    finest = base + loaded - 1
    octree = octree_from_child_masks(masks[:finest] + [torch.zeros(nodes[finest], dtype=torch.uint8)])
    corners = []
    for k in range(loaded):
        keys, table = cell_corners(octree, base + k)
        if keys.numel() != grid["levels"][k]["corners"]:
            chunk = next(c for c in chunks if c.kind == "octree" and c.lod == k)
            raise FormatError(f"{source}: the octree gives LOD {k} {keys.numel()} corners but the metadata says "
                              f"{grid['levels'][k]['corners']} at byte {chunk.offset}")
        corners.append(table)
    rows = [LevelRows(codebook=lv.get("codebook"), indices=lv.get("indices"), features=lv.get("features"),
                      bits=lv.get("bits")) for lv in levels]
    scene = structure["scene"]
    return InferenceField(torch.tensor(scene["center"], dtype=torch.float32), float(scene["half_size"]), octree,
                          base, rows, corners, decoder, kind, grid["n_lods"], user)


def model_layout(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview) -> ModelLayout:
    """Header fields, metadata and the chunk table of a file or a prefix of one (header and metadata chunk must be
    complete; for a path only those bytes are read). FormatError when they are malformed."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        view, source = memoryview(path_or_bytes).cast("B"), "<bytes>"
        available = len(view)
    else:
        source = os.fspath(path_or_bytes)
        head = read_model_file(source, HEADER_BYTES + CHUNK_HEADER_BYTES)
        available = os.path.getsize(source)
        need = HEADER_BYTES + CHUNK_OVERHEAD
        if len(head) == HEADER_BYTES + CHUNK_HEADER_BYTES:
            e, _ = _parse_header(memoryview(head), source)
            length = struct.unpack_from(e + "Q", head, HEADER_BYTES + 8)[0]
            need += min(length, MAX_METADATA_BYTES + 1)
        view = memoryview(read_model_file(source, need))
    e, version = _parse_header(view, source)
    structure, user, meta_end = _parse_metadata(view, e, version, source)
    chunks, prefix = _chunk_plan(structure, meta_end, source)
    grid = structure["grid"]
    return ModelLayout(
        version=version, byte_order="little" if e == "<" else "big", grid_kind=grid["kind"],
        base_level=grid["base_level"], n_lods=grid["n_lods"], feature_dim=grid["feature_width"],
        bits=[lv["bits"] for lv in grid["levels"]], structure=structure, metadata=user, chunks=chunks,
        lod_prefix_bytes=prefix, total_bytes=chunks[-1].end, available_bytes=available,
        complete_lods=sum(1 for p in prefix if p <= available))


def chunk_states(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview, layout: ModelLayout
                 ) -> list[str]:
    """Per chunk of `layout` (metadata first): "intact" (all bytes present, tag, LOD, length and CRC right, and a
    compressed chunk decodes to the length its grid needs), "damaged" (present but one of those wrong), "partial"
    (the file ends inside it) or "missing" (ends before it). Reads one chunk at a time, so memory stays at the
    largest chunk."""
    e = "<" if layout.byte_order == "little" else ">"
    raw_lengths = [None] + [length for _, _, length in expected_chunks(layout.structure["grid"])]

    def check(view: memoryview, chunk: ChunkInfo, raw_length: int) -> str:
        try:
            payload = _checked_payload(view, dataclasses.replace(chunk, offset=0, end=len(view)), e, "")
        except FormatError:
            return "damaged"
        return "intact" if _decodes_whole(payload, chunk, raw_length) else "damaged"  # a CRC over damaged data

    states = []
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = memoryview(path_or_bytes).cast("B")
        for c, raw in zip(layout.chunks, raw_lengths):
            states.append("missing" if c.offset >= len(data) else "partial" if c.end > len(data)
                          else check(data[c.offset:c.end], c, raw))
        return states
    try:
        with open(path_or_bytes, "rb") as f:
            for c, raw in zip(layout.chunks, raw_lengths):
                if c.offset >= layout.available_bytes:
                    states.append("missing")
                elif c.end > layout.available_bytes:
                    states.append("partial")
                else:
                    f.seek(c.offset)
                    states.append(check(memoryview(f.read(c.end - c.offset)), c, raw))
    except OSError as err:
        raise FormatError(f"cannot read {os.fspath(path_or_bytes)}: {err.strerror or err}") from None
    return states


def _check_limits(max_bytes: int | None, max_lod: int | None) -> None:
    if max_lod is not None and max_lod < 0:
        raise ValueError(f"max_lod must be >= 0, got {max_lod}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")


def _parse_header(view: memoryview, source: str) -> tuple[str, int]:
    """(byte order "<" | ">", version) of a file's first 16 bytes."""
    if len(view) < HEADER_BYTES:
        if bytes(view[:4]) != MAGIC[: len(view[:4])]:
            raise FormatError(f"{source}: not a vbnf model: wrong magic {bytes(view[:4])!r} at byte 0")
        raise FormatError(f"{source}: file is {len(view)} bytes, shorter than the {HEADER_BYTES}-byte header "
                          f"(truncated) at byte {len(view)}")
    if bytes(view[:4]) != MAGIC:
        raise FormatError(f"{source}: not a vbnf model: wrong magic {bytes(view[:4])!r} (expected {MAGIC!r}) "
                          f"at byte 0")
    mark = bytes(view[4:6])
    if mark not in (b"\xff\xfe", b"\xfe\xff"):
        raise FormatError(f"{source}: unknown byte-order mark {mark!r} at byte 4")
    e = "<" if mark == b"\xff\xfe" else ">"
    version, reserved, crc = struct.unpack_from(e + "HII", view, 6)
    if version not in READABLE_VERSIONS:  # before the CRC: another version may lay its header out differently
        raise FormatError(f"{source}: unknown format version {version} (this reader knows "
                          f"{', '.join(map(str, READABLE_VERSIONS))}; a newer vbnf may read it) at byte 6")
    if crc != zlib.crc32(view[:12]):
        raise FormatError(f"{source}: header CRC mismatch (stored {crc:#010x}, computed {zlib.crc32(view[:12]):#010x})"
                          f" at byte 12")
    if reserved != 0:
        raise FormatError(f"{source}: reserved header field is {reserved:#x}, expected 0 at byte 8")
    return e, version


def _parse_metadata(view: memoryview, e: str, version: int, source: str) -> tuple[dict, dict, int]:
    """(validated structure block, user metadata, end offset) of the metadata chunk at byte 16."""
    off = HEADER_BYTES
    if len(view) < off + CHUNK_HEADER_BYTES:
        raise FormatError(f"{source}: file ends at byte {len(view)} inside the metadata chunk header "
                          f"(truncated; nothing renderable) at byte {off}")
    tag, lod, length = struct.unpack_from(e + "4sIQ", view, off)
    if tag != b"META" or lod != NO_LOD:
        raise FormatError(f"{source}: expected the metadata chunk (tag b'META', no LOD), found tag {tag!r} "
                          f"lod {lod} at byte {off}")
    if length > MAX_METADATA_BYTES:
        raise FormatError(f"{source}: metadata length field {length} exceeds the {MAX_METADATA_BYTES}-byte limit "
                          f"at byte {off + 8}")
    chunk = ChunkInfo("metadata", None, off, length, off + CHUNK_OVERHEAD + length)
    if chunk.end > len(view):
        raise FormatError(f"{source}: file ends at byte {len(view)} inside the metadata chunk (it needs "
                          f"{chunk.end} bytes; truncated, nothing renderable) at byte {off}")
    payload = _checked_payload(view, chunk, e, source)
    where = off + CHUNK_HEADER_BYTES
    try:
        text = decode_metadata_payload(bytes(payload))
    except ValueError as err:
        raise FormatError(f"{source}: {err} at byte {where}") from None
    try:
        doc = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise FormatError(f"{source}: metadata is not UTF-8 ({err.reason}) at byte {where + err.start}") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{source}: metadata is not valid JSON ({err.msg}) at byte {where + err.pos}") from None
    except (ValueError, RecursionError) as err:
        raise FormatError(f"{source}: metadata JSON cannot be read ({type(err).__name__}) at byte {where}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{source}: metadata JSON is a {type(doc).__name__}, expected an object at byte {where}")
    structure = doc.get("structure")
    user = doc.get("metadata", {})
    if not isinstance(user, dict):
        raise FormatError(f"{source}: metadata field 'metadata' is a {type(user).__name__}, expected an object "
                          f"at byte {where}")
    if _json_depth(user) > MAX_METADATA_DEPTH:
        raise FormatError(f"{source}: metadata nests deeper than {MAX_METADATA_DEPTH} levels at byte {where}")
    try:
        _validate_structure(structure, version)
    except ValueError as err:
        raise FormatError(f"{source}: invalid metadata: {err} at byte {where}") from None
    return structure, sanitize_metadata(user, source), chunk.end


def _checked_payload(view: memoryview, chunk: ChunkInfo, e: str, source: str) -> memoryview:
    """The payload of a chunk whose bytes are all present, after checking its tag, LOD, length and CRC."""
    tag, lod, length = struct.unpack_from(e + "4sIQ", view, chunk.offset)
    want_lod = NO_LOD if chunk.lod is None else chunk.lod
    if tag != TAGS[chunk.kind] or lod != want_lod:
        lod_text = "none" if chunk.lod is None else chunk.lod
        raise FormatError(f"{source}: expected the {chunk.kind} chunk (tag {TAGS[chunk.kind]!r}, LOD {lod_text}), "
                          f"found tag {tag!r} lod {lod} at byte {chunk.offset}")
    if length != chunk.length:
        past = " (points past the end of the file)" if chunk.offset + CHUNK_OVERHEAD + length > len(view) else ""
        raise FormatError(f"{source}: {chunk.kind} chunk length field {length}{past} disagrees with the "
                          f"{chunk.length} bytes the metadata and structure require at byte {chunk.offset + 8}")
    start = chunk.offset + CHUNK_HEADER_BYTES
    payload = view[start:start + length]
    stored = struct.unpack_from(e + "I", view, start + length)[0]
    computed = zlib.crc32(payload, zlib.crc32(view[chunk.offset:start]))
    if stored != computed:
        lod_text = "" if chunk.lod is None else f" of LOD {chunk.lod}"
        raise FormatError(f"{source}: CRC mismatch in the {chunk.kind} chunk{lod_text} (stored {stored:#010x}, "
                          f"computed {computed:#010x}) at byte {start + length}")
    return payload


def _decoder_from_payload(payload: memoryview, f: int, e: str, chunk: ChunkInfo, source: str
                          ) -> dict[str, torch.Tensor]:
    values = np.frombuffer(payload, dtype=e + "f2").astype(np.float32)
    if not np.isfinite(values).all():
        raise FormatError(f"{source}: decoder weights hold non-finite values at byte {chunk.offset}")
    out, pos = {}, 0
    for name, shape in decoder_arch.decoder_shapes(f).items():
        n = math.prod(shape)
        out[name] = torch.from_numpy(values[pos:pos + n].copy()).reshape(shape)
        pos += n
    try:
        check_decoder(out, f)
    except ValueError as err:
        raise FormatError(f"{source}: {err} at byte {chunk.offset}") from None
    return out


def _fp16_from_payload(payload: memoryview, shape: tuple[int, int], e: str, chunk: ChunkInfo, source: str
                       ) -> torch.Tensor:
    values = np.frombuffer(payload, dtype=e + "f2").astype(np.float32)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise FormatError(f"{source}: {chunk.kind} of LOD {chunk.lod} holds a non-finite value at byte "
                          f"{chunk.offset + CHUNK_HEADER_BYTES + 2 * bad}")
    return torch.from_numpy(values).reshape(shape)


def _masks_from_payload(payload: memoryview, octree_levels, nodes: list[int], chunk: ChunkInfo, source: str
                        ) -> list[torch.Tensor]:
    """Child masks of `octree_levels` (uint8 [nodes[l]] each); their popcounts must equal the next level's nodes."""
    out, pos = [], 0
    for l in octree_levels:
        mask = np.frombuffer(payload, dtype=np.uint8, count=nodes[l], offset=pos)
        children = int(np.unpackbits(mask).sum())
        if children != nodes[l + 1]:
            raise FormatError(f"{source}: child masks of octree level {l} have {children} bits set but level {l + 1} "
                              f"has {nodes[l + 1]} nodes at byte {chunk.offset + CHUNK_HEADER_BYTES + pos}")
        out.append(torch.from_numpy(mask.copy()))
        pos += nodes[l]
    return out


def _chunk_plan(structure: dict, meta_end: int, source: str) -> tuple[list[ChunkInfo], list[int]]:
    """Every chunk's offset (from the validated structure) and the prefix bytes of each stored LOD."""
    chunks = [ChunkInfo("metadata", None, HEADER_BYTES, meta_end - HEADER_BYTES - CHUNK_OVERHEAD, meta_end)]
    prefix = []
    off = meta_end
    for c in structure["chunks"]:
        end = off + CHUNK_OVERHEAD + c["length"]
        chunks.append(ChunkInfo(c["kind"], c["lod"], off, c["length"], end, c.get("coding", "raw")))
        off = end
    for c in chunks[1:]:
        if c.lod is not None:
            if c.lod == len(prefix):
                prefix.append(c.end)
            prefix[c.lod] = c.end
    return chunks, prefix


# ---------------------------------------------------------------------------------------------------------------
# Metadata validation (the JSON is the one part whose meaning a CRC cannot vouch for)


def _json_depth(value) -> int:
    """Nesting depth of a JSON value (iterative: a hostile file cannot exhaust the stack here)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [v for node in level if isinstance(node, (dict, list))
                 for v in (node.values() if isinstance(node, dict) else node)]
    return depth - 1


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {shown(value)}")
    return value


def _finite(value, name: str) -> float:
    huge_int = isinstance(value, int) and abs(value) > 10 ** 30  # float() of a huge int overflows
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or huge_int or not math.isfinite(value)
            or abs(value) > 1e30):
        raise ValueError(f"{name} must be a finite number of magnitude <= 1e30, got {shown(value)}")
    return float(value)


def _exactly(value, want) -> bool:
    """`value` equals `want` and has its type: JSON's 1.0 and true are not the integer 1 (both compare equal to it
    in Python, and a float that passed as a count or an offset broke slicing later)."""
    return type(value) is type(want) and value == want


def _obj(value, name: str, kind: type) -> object:
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a JSON {'object' if kind is dict else 'array'}, got {shown(value)}")
    return value


def expected_chunks(grid: dict) -> list[tuple[str, int | None, int]]:
    """(kind, lod, payload length) of every chunk after the metadata, from a validated grid block."""
    base, f, nodes = grid["base_level"], grid["feature_width"], grid["octree_nodes"]
    out: list[tuple[str, int | None, int]] = [("decoder", None, decoder_bytes(f))]
    for k, lv in enumerate(grid["levels"]):
        out.append(("octree", k, sum(nodes[:base]) if k == 0 else nodes[base + k - 1]))
        if grid["kind"] == "dense":
            out.append(("features", k, lv["corners"] * f * 2))
        else:
            out += [("codebook", k, (1 << lv["bits"]) * f * 2), ("indices", k, packed_size(lv["corners"], lv["bits"]))]
    return out


def _validate_structure(structure, version: int) -> None:
    """Raises ValueError naming the first field of the structure block with a wrong type, range or consistency."""
    _obj(structure, "structure", dict)
    scene = _obj(structure.get("scene"), "structure.scene", dict)
    center = _obj(scene.get("center"), "scene.center", list)
    if len(center) != 3:
        raise ValueError(f"scene.center must hold 3 numbers, got {len(center)}")
    for i, v in enumerate(center):
        _finite(v, f"scene.center[{i}]")
    half = _finite(scene.get("half_size"), "scene.half_size")
    if not limits.MIN_SCENE_HALF_SIZE <= half <= limits.MAX_SCENE_COORD:
        raise ValueError(f"scene.half_size must be in {limits.MIN_SCENE_HALF_SIZE:g}..{limits.MAX_SCENE_COORD:g} "
                         f"(world units), got {shown(scene['half_size'])}")
    far = max(abs(float(v)) for v in center)
    if far > limits.MAX_SCENE_COORD or far > limits.MAX_CENTER_OVER_HALF_SIZE * half:
        raise ValueError(f"scene.center {shown(center)} is too far from the origin for half_size {half:g} (at most "
                         f"{limits.MAX_SCENE_COORD:g} and {limits.MAX_CENTER_OVER_HALF_SIZE:g} x half_size)")

    grid = _obj(structure.get("grid"), "structure.grid", dict)
    kind = grid.get("kind")
    if kind not in GRID_KINDS:
        raise ValueError(f"grid.kind must be one of {', '.join(GRID_KINDS)}, got {shown(kind)}")
    base = _int(grid.get("base_level"), "grid.base_level", 0, MAX_OCTREE_LEVEL)
    n_lods = _int(grid.get("n_lods"), "grid.n_lods", 1, MAX_OCTREE_LEVEL + 1 - base)
    f = _int(grid.get("feature_width"), "grid.feature_width", 1, MAX_FEATURE_DIM)
    levels = _obj(grid.get("levels"), "grid.levels", list)
    if not 1 <= len(levels) <= n_lods:
        raise ValueError(f"grid.levels must list 1..{n_lods} LODs, got {len(levels)}")
    nodes = _obj(grid.get("octree_nodes"), "grid.octree_nodes", list)
    if len(nodes) != base + len(levels):
        raise ValueError(f"grid.octree_nodes must list {base + len(levels)} levels, got {len(nodes)}")
    for l, n in enumerate(nodes):
        _int(n, f"grid.octree_nodes[{l}]", 1 if l == 0 else 0, 1 if l == 0 else min(8 ** l, 8 * nodes[l - 1]))

    decoder = _obj(structure.get("decoder"), "structure.decoder", dict)
    want = {"architecture": DECODER_ARCHITECTURE, "feature_dim": f, "hidden": decoder_arch.HIDDEN,
            "geo_dim": decoder_arch.GEO_DIM, "dir_freqs": decoder_arch.DIR_FREQS, "dtype": "float16"}
    for key, value in want.items():
        if not _exactly(decoder.get(key), value):
            raise ValueError(f"decoder.{key} is {shown(decoder.get(key))}; this reader supports {value!r}")

    for k, lv in enumerate(levels):
        name = f"grid.levels[{k}]"
        _obj(lv, name, dict)
        if kind == "dense":
            lv.setdefault("bits", None)  # a dense level may leave bits out; readers may rely on the key
        if not _exactly(lv.get("lod"), k) or not _exactly(lv.get("octree_level"), base + k):
            raise ValueError(f"{name} must be LOD {k} at octree level {base + k}")
        if kind == "dense":
            if lv.get("bits") is not None or not _exactly(lv.get("codebook_rows"), 0):
                raise ValueError(f"{name}: a dense grid has bits null and codebook_rows 0")
        else:
            bits = _int(lv.get("bits"), f"{name}.bits", 1, MAX_BITS)
            if not _exactly(lv.get("codebook_rows"), 1 << bits):
                raise ValueError(f"{name}.codebook_rows must be 2^bits = {1 << bits}")
        if not _exactly(lv.get("feature_width"), f):
            raise ValueError(f"{name}.feature_width must equal grid.feature_width {f}")
        cells = _int(lv.get("cells"), f"{name}.cells", 0, nodes[base + k])
        if cells != nodes[base + k]:
            raise ValueError(f"{name}.cells {cells} disagrees with grid.octree_nodes {nodes[base + k]}")
        # Each cell's corner (0, 0, 0) is a distinct corner, so there are at least as many corners as cells.
        _int(lv.get("corners"), f"{name}.corners", max(8, cells) if cells else 0, 8 * cells)

    table = _obj(structure.get("chunks"), "structure.chunks", list)
    expected = expected_chunks(grid)
    if len(table) != len(expected):
        raise ValueError(f"structure.chunks lists {len(table)} chunks, the grid needs {len(expected)}")
    for i, (entry, (kind_, lod, length)) in enumerate(zip(table, expected)):
        _obj(entry, f"structure.chunks[{i}]", dict)
        if not _exactly(entry.get("kind"), kind_) or "lod" not in entry or not _exactly(entry["lod"], lod):
            raise ValueError(f"structure.chunks[{i}] must be the {kind_} chunk of LOD {lod}, got "
                             f"{shown(entry.get('kind'))} of LOD {shown(entry.get('lod'))}")
        coding = entry.get("coding", "raw")
        if coding == "raw":
            if not _exactly(entry.get("length"), length):
                raise ValueError(f"structure.chunks[{i}].length must be {length} for that grid, got "
                                 f"{shown(entry.get('length'))}")
        elif coding not in CODINGS or kind_ not in COMPRESSIBLE_KINDS or version < 2 or length < 2:
            raise ValueError(f"structure.chunks[{i}].coding {shown(coding)} is not allowed for {kind_} chunks in "
                             f"version {version} files")
        else:  # compressed: stored in fewer bytes than it decodes to (the decode is bounded by that length)
            _int(entry.get("length"), f"structure.chunks[{i}].length", 1, length - 1)
