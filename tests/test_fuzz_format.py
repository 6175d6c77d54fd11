"""Fuzzing the .vbnf reader: thousands of damaged copies of real small model files (a dense and a vq model, built
here). Each must load (possibly with TruncatedModelWarning, and then render finite colours) or raise FormatError:
no other exception, no hang (a per-case timer), no runaway memory. Seeded; every case is reproducible alone from
(model, mutation, index): see `mutated_bytes`. Two families: damaged bytes (`CASES`), and CRC-valid edits of what the
file means (`SEMANTIC_CASES`: counts, masks, levels, bits, widths, scene box, metadata types), whose lengths, chunk
table and CRCs are recomputed so that the checks behind them run; a loaded case must also stay within the loader's
memory bound (engine/limits.py).

`FUZZ_CASES` is the number of cases this file runs; bench/format.py reports it and can run `run_fuzz` on real models.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import resource
import signal
import struct
import time
import warnings
import zlib
from collections import Counter

import pytest
import torch

from engine.errors import FormatError
from engine.field import NeuralField
from engine import limits
from engine.fileformat import (TruncatedModelWarning, decode_metadata_payload, load_model_bytes, load_working_bytes,
                               model_layout, save_model_bytes)
from engine.octree import morton_encode, octree_from_finest_cells
from engine.render import render_field_rays
from tests import vbnf_forge as forge

FUZZ_SEED = 20220516
CASES = {  # mutation -> cases per model file
    "truncate": 800, "bit_flips": 1000, "insert_bytes": 400, "delete_bytes": 400, "overwrite_span": 400,
    "huge_length": 400, "json_with_crc": 700, "payload_with_crc": 600, "chunk_header_with_crc": 200,
    "header_with_crc": 100, "reorder_chunks": 100,
}
SEMANTIC_CASES = {  # CRC-valid edits of what the file means (counts, masks, levels, bits, widths, box, metadata)
    "counts": 900, "masks": 900, "levels": 700, "bits": 600, "widths": 400, "box": 400, "metadata_types": 600,
    "kind": 100, "mixed": 400,
}
MODELS = ("dense", "vq")
FUZZ_CASES = len(MODELS) * (sum(CASES.values()) + sum(SEMANTIC_CASES.values()))
RENDER_MAX_LEVEL = 10  # a loaded case is rendered when its finest octree level (from n_lods) is at most this
CASE_TIME_LIMIT_S = 5.0  # a hang fails the case instead of the CI job; typical cases take milliseconds


def build_model_bytes(kind: str, seed: int = 0) -> bytes:
    """A small real model file: a sphere-shell octree to level 4, LOD 0 at level 1 (4 LODs), F=4."""
    r = 16
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz.float() + 0.5) / r - 0.5).norm(dim=1)
    octree = octree_from_finest_cells(morton_encode(xyz[(dist - 0.3).abs() < 1.0 / r]), 4)
    nf = NeuralField(octree, 1, kind, feature_dim=4, bits=None if kind == "dense" else 3, seed=seed)
    return save_model_bytes(nf.freeze(), {"metrics": {"psnr": 25.0}, "provenance": {"dataset": "fuzz", "steps": 1}})


# ---------------------------------------------------------------------------------------------------------------
# Mutations (each a pure function of the bytes and a seeded Random)


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, end) of every chunk of the pristine file, metadata first."""
    return [(c.offset, c.end) for c in model_layout(data).chunks]


def _with_chunk(data: bytes, offset: int, end: int, head: bytes, payload: bytes) -> bytes:
    """Replaces the chunk at [offset, end) by header `head` (16 bytes) + payload + a correct CRC."""
    crc = zlib.crc32(payload, zlib.crc32(head))
    return data[:offset] + head + payload + struct.pack("<I", crc) + data[end:]


def _random_json_value(rng: random.Random, old):
    pool = [-1, 0, 1, 2, 7, 255, 2 ** 31, 2 ** 63, 10 ** 30, -10 ** 30, 1.5, -0.0, math.nan, math.inf, "x", "",
            None, True, False, [], {}, [1, 2, 3], {"a": 1}, "vq", "dense", "octree", 10 ** 4000]
    if isinstance(old, bool) or not isinstance(old, (int, float)):
        return rng.choice(pool)
    return rng.choice(pool + [old + 1, old - 1, old * 2, old // 2 if isinstance(old, int) else old / 2, -old])


def _json_paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _json_paths(v, path + (i,))


def _mutate_json(doc, rng: random.Random):
    paths = [p for p in _json_paths(doc) if p]
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.1 and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            try:
                parent[path[-1]] = _random_json_value(rng, parent[path[-1]])
            except (KeyError, IndexError, TypeError):
                pass
        paths = [p for p in _json_paths(doc) if p]
        if not paths:
            break
    return doc


MAX_RESIZED_CHUNK = 1 << 22  # semantic edits back a claimed count with bytes only up to this payload size


def _count_value(rng: random.Random, old: int) -> int:
    return rng.choice([0, 1, 7, 8, 9, 64, 512, 4096, 8 ** 6, 8 ** 8, 2 ** 31, 2 ** 40, old + 1, old - 1, old * 2,
                       old // 2, old * 8, max(1, old // 8)])


def _backed(doc: dict, chunks: list[list], rng: random.Random) -> list[list]:
    """Usually the chunks resized to what the (edited) grid implies, so lengths and the chunk table agree and the
    deeper checks run; left as they are when the grid cannot say (it is invalid) or asks for huge payloads."""
    if rng.random() < 0.15:
        return chunks
    try:
        want = forge.expected_chunks(doc["structure"]["grid"])
        if any(not isinstance(n, int) or n > MAX_RESIZED_CHUNK for _, _, n in want):
            return chunks
        return forge.resize_payloads(doc, chunks, fill=rng.choice([0, 0, 255, 1]))
    except Exception:  # noqa: BLE001 - an edit the format rejects; the loader must say so
        return chunks


def _edit_counts(doc, chunks, rng):
    grid = doc["structure"]["grid"]
    nodes, levels = grid["octree_nodes"], grid["levels"]
    for _ in range(rng.choice([1, 1, 2])):
        what = rng.choice(["nodes", "cells", "corners", "both"])
        if what in ("nodes", "both"):
            l = rng.randrange(len(nodes))
            nodes[l] = _count_value(rng, nodes[l])
            if what == "both" and l >= grid["base_level"] and l - grid["base_level"] < len(levels):
                levels[l - grid["base_level"]]["cells"] = nodes[l]
        if what in ("cells", "corners"):
            lv = rng.choice(levels)
            lv[what] = _count_value(rng, lv[what])
    return doc, _backed(doc, chunks, rng)


def _edit_masks(doc, chunks, rng):
    """Child masks rewritten (to 0xFF, 0, or random), and usually octree_nodes / cells recounted from them, so the
    popcounts agree and the corner counts are what must catch it."""
    grid = doc["structure"]["grid"]
    octree = [c for c in chunks if c[0] == "octree" and c[2]]
    if not octree:
        return doc, chunks
    c = rng.choice(octree)
    payload = bytearray(c[2])
    style = rng.choice(["full", "zero", "random", "one"])
    for i in rng.sample(range(len(payload)), k=max(1, len(payload) // rng.choice([1, 2, 8]))):
        payload[i] = {"full": 255, "zero": 0, "random": rng.randrange(256), "one": 1 << rng.randrange(8)}[style]
    c[2] = bytes(payload)
    if rng.random() < 0.8:  # recount every level below from the masks actually stored
        masks = b"".join(p for k, _, p in chunks if k == "octree")
        nodes, pos = [1], 0
        for l in range(len(grid["octree_nodes"]) - 1):
            level = masks[pos:pos + nodes[l]]
            pos += nodes[l]
            nodes.append(sum(bin(b).count("1") for b in level))
        grid["octree_nodes"] = nodes
        for k, lv in enumerate(grid["levels"]):
            lv["cells"] = nodes[grid["base_level"] + k]
            if rng.random() < 0.5:
                lv["corners"] = min(8 * lv["cells"], max(lv["corners"], lv["cells"]))
    return doc, _backed(doc, chunks, rng)


def _edit_levels(doc, chunks, rng):
    grid = doc["structure"]["grid"]
    choice = rng.randrange(5)
    if choice == 0:
        grid["n_lods"] = rng.choice([0, 1, len(grid["levels"]) - 1, len(grid["levels"]) + 1, 12, 19, 20, 21, 40])
    elif choice == 1:
        grid["base_level"] = max(0, grid["base_level"] + rng.choice([-1, 1, 2, 19]))
    elif choice == 2:  # drop the finest LOD (and its chunks), keeping n_lods: a saved prefix
        if len(grid["levels"]) > 1:
            k = len(grid["levels"]) - 1
            grid["levels"].pop()
            grid["octree_nodes"].pop()
            chunks[:] = [c for c in chunks if c[1] != k]
    elif choice == 3:
        lv = rng.choice(grid["levels"])
        lv[rng.choice(["lod", "octree_level"])] += rng.choice([-1, 1, 8])
    else:  # duplicate the finest LOD's entry (one more LOD than the octree lists)
        grid["levels"].append(dict(grid["levels"][-1], lod=len(grid["levels"])))
        grid["octree_nodes"].append(grid["octree_nodes"][-1])
    return doc, _backed(doc, chunks, rng)


def _edit_bits(doc, chunks, rng):
    grid = doc["structure"]["grid"]
    for lv in rng.sample(grid["levels"], k=rng.randint(1, len(grid["levels"]))):
        lv["bits"] = rng.choice([None, 0, 1, 2, 5, 8, 12, 16, 17, 32, "4", 3.0])
        if rng.random() < 0.8 and isinstance(lv["bits"], int) and 0 <= lv["bits"] <= 20:
            lv["codebook_rows"] = 1 << lv["bits"]
        if rng.random() < 0.2:
            lv.pop("bits")
    return doc, _backed(doc, chunks, rng)


def _edit_widths(doc, chunks, rng):
    grid, decoder = doc["structure"]["grid"], doc["structure"]["decoder"]
    f = rng.choice([0, 1, 2, 3, 8, 16, 64, 1024, 1025, -4, 2 ** 31])
    targets = rng.choice([["grid"], ["decoder"], ["grid", "decoder"], ["grid", "decoder", "levels"]])
    if "grid" in targets:
        grid["feature_width"] = f
    if "decoder" in targets:
        decoder["feature_dim"] = f
    if "levels" in targets:
        for lv in grid["levels"]:
            lv["feature_width"] = f
    return doc, _backed(doc, chunks, rng)


def _edit_box(doc, chunks, rng):
    pool = [5e-324, 1e-320, 1e-30, 1e-10, 1e-9, 1e-3, 0.0, -1.0, 1.0, 1e6, 1e9, 1.1e9, 1e12, 1e30, 1e300, math.inf,
            math.nan, -1e30, 2 ** 70, 10 ** 40]
    scene = doc["structure"]["scene"]
    if rng.random() < 0.6:
        scene["half_size"] = rng.choice(pool)
    if rng.random() < 0.6:
        scene["center"] = [rng.choice(pool + [0.0, 0.5, -2.0]) if rng.random() < 0.5 else v for v in scene["center"]]
    return doc, chunks


def _edit_metadata_types(doc, chunks, rng):
    pool = [None, 0, 1.5, math.nan, "x", "", True, [], {}, [1, "a"], {"a": [None]}, 10 ** 400, -1,
            [{"lod": 0, "psnr": "x"}], [{"lod": -1, "psnr": 1}], [{"lod": True, "psnr": 1.0, "ssim": None}],
            {"test_per_lod": 3}, {"psnr": [1]}, [{"from_bits": "x"}]]
    user = doc["metadata"]
    for _ in range(rng.choice([1, 2, 3])):
        key = rng.choice(["metrics", "conversions", "provenance", "dataset", "version", "other"])
        value = copy.deepcopy(rng.choice(pool))  # a copy: one pool dict put inside itself is a circular document
        if key == "metrics" and rng.random() < 0.5 and isinstance(user.get("metrics"), dict):
            user["metrics"][rng.choice(["psnr", "test_per_lod", "val_per_lod", "x_per_lod"])] = value
        else:
            user[key] = value
    return doc, chunks


def _edit_kind(doc, chunks, rng):
    grid = doc["structure"]["grid"]
    grid["kind"] = rng.choice(["dense", "vq", "random", "kmeans", "sparse"])
    for lv in grid["levels"]:
        if grid["kind"] == "dense" and rng.random() < 0.7:
            lv["bits"], lv["codebook_rows"] = None, 0
        elif grid["kind"] != "dense" and lv.get("bits") is None and rng.random() < 0.7:
            lv["bits"], lv["codebook_rows"] = 2, 4
    return doc, _backed(doc, chunks, rng)


SEMANTIC_EDITS = {"counts": _edit_counts, "masks": _edit_masks, "levels": _edit_levels, "bits": _edit_bits,
                  "widths": _edit_widths, "box": _edit_box, "metadata_types": _edit_metadata_types,
                  "kind": _edit_kind}


def semantic_bytes(data: bytes, mutation: str, rng: random.Random) -> bytes:
    """A copy of the pristine file `data` with its meaning edited and every length and CRC recomputed
    ("mixed": two or three edits of different kinds)."""
    doc, chunks = forge.split_file(data)
    edits = (rng.sample(sorted(SEMANTIC_EDITS), k=rng.choice([2, 3])) if mutation == "mixed" else [mutation])
    for name in edits:
        try:
            doc, chunks = SEMANTIC_EDITS[name](doc, chunks, rng)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass  # an earlier edit left nothing for this one to edit (e.g. a level it expected); keep what is done
    return forge.join_file(doc, chunks, fix_table=rng.random() < 0.95, compress=rng.random() < 0.8)


def mutated_bytes(data: bytes, mutation: str, rng: random.Random) -> bytes:
    """One damaged copy of the pristine file `data`."""
    if mutation in SEMANTIC_CASES:
        return semantic_bytes(data, mutation, rng)
    n = len(data)
    chunks = _chunks(data)
    if mutation == "truncate":
        if rng.random() < 0.5:
            return data[:rng.randrange(n)]
        _, end = rng.choice(chunks)
        return data[:max(0, min(n - 1, end + rng.choice([-1, 0, 0, 0, 1, 16])))]
    if mutation == "bit_flips":
        out = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3, 8])):
            pos = rng.randrange(n) if rng.random() < 0.7 else rng.randrange(min(n, 64))
            out[pos] ^= 1 << rng.randrange(8)
        return bytes(out)
    if mutation == "insert_bytes":
        pos = rng.randrange(n + 1)
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[pos:]
    if mutation == "delete_bytes":
        pos = rng.randrange(n)
        return data[:pos] + data[pos + rng.randint(1, 16):]
    if mutation == "overwrite_span":
        pos = rng.randrange(n)
        span = bytes(rng.choice([0, 255, rng.randrange(256)]) for _ in range(rng.randint(1, 32)))
        return (data[:pos] + span + data[pos + len(span):])[:n]
    if mutation == "huge_length":
        offset, end = rng.choice(chunks)
        old = end - offset - 20
        value = rng.choice([2 ** 64 - 1, 2 ** 63, 2 ** 40, 2 ** 32 + old, n, old + 1, max(0, old - 1), 0,
                            rng.getrandbits(64)])
        return data[:offset + 8] + struct.pack("<Q", value) + data[offset + 16:]
    if mutation == "json_with_crc":
        offset, end = chunks[0]
        doc = _mutate_json(json.loads(decode_metadata_payload(data[offset + 16:end - 4])), rng)
        payload = json.dumps(doc).encode() if rng.random() < 0.9 else json.dumps(doc)[: rng.randrange(50)].encode()
        if rng.random() < 0.5:  # vbnf writes it compressed; readers also take plain JSON
            payload = zlib.compress(payload)
        return _with_chunk(data, offset, end, data[offset:offset + 8] + struct.pack("<Q", len(payload)), payload)
    if mutation == "payload_with_crc":
        offset, end = rng.choice([c for c in chunks[1:] if c[1] - c[0] > 20])
        payload = bytearray(data[offset + 16:end - 4])
        for _ in range(rng.choice([1, 1, 2, 4])):
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        return _with_chunk(data, offset, end, data[offset:offset + 16], bytes(payload))
    if mutation == "chunk_header_with_crc":
        offset, end = rng.choice(chunks)
        tag, lod, length = struct.unpack_from("<4sIQ", data, offset)
        choice = rng.randrange(3)
        if choice == 0:
            tag = rng.choice([b"META", b"DECO", b"OCTR", b"CODE", b"INDX", b"FEAT", b"\0\0\0\0"])
        elif choice == 1:
            lod = rng.choice([0, 1, 2, 3, 4, 0xFFFFFFFF, rng.getrandbits(32)])
        else:
            length = rng.choice([0, length + 1, 2 ** 62])
        return _with_chunk(data, offset, end, struct.pack("<4sIQ", tag, lod, length), data[offset + 16:end - 4])
    if mutation == "header_with_crc":
        head = bytearray(data[:12])
        pos = rng.randrange(4, 12)
        head[pos] = rng.randrange(256)
        return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + data[16:]
    if mutation == "reorder_chunks":
        i = rng.randrange(1, len(chunks) - 1)
        (a0, a1), (b0, b1) = chunks[i], chunks[i + 1]
        if rng.random() < 0.5:
            return data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:]
        return data[:a1] + data[a0:a1] + data[a1:]  # a duplicated chunk
    raise ValueError(f"unknown mutation {mutation}")


# ---------------------------------------------------------------------------------------------------------------
# Running cases


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_case(data: bytes, rays: tuple[torch.Tensor, torch.Tensor], time_limit_s: float = CASE_TIME_LIMIT_S,
             stats: dict | None = None) -> str:
    """'loaded' | 'truncated' | 'format_error'; raises AssertionError for anything else (other exceptions, a
    loaded field over the loader's memory bound or that does not render finite colours, a case over the time
    limit). A loaded field is rendered when its finest octree level (base_level + n_lods - 1) is at most
    RENDER_MAX_LEVEL (deeper claims are the renderer's to bound; tests of the renderer cover them).
    stats: when given, "max_memory_ratio" keeps the largest loader-memory estimate / file bytes of a loaded case."""
    use_timer = hasattr(signal, "setitimer")
    if use_timer:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit_s)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                field = load_model_bytes(data, source="fuzz.vbnf")
            except FormatError as err:
                message = str(err)
                assert "\n" not in message and "byte" in message, f"FormatError without a byte offset: {message}"
                return "format_error"
        others = [w for w in caught if not issubclass(w.category, TruncatedModelWarning)]
        assert not others, f"unexpected warning {others[0].category.__name__}: {others[0].message}"
        grid = model_layout(data).structure["grid"]
        ratio = load_working_bytes(grid, len(field.levels)) / len(data)
        assert ratio <= limits.LOAD_BYTES_PER_FILE_BYTE, f"loader memory estimate {ratio:.0f} x the file's bytes"
        if stats is not None:
            stats["max_memory_ratio"] = max(stats.get("max_memory_ratio", 0.0), ratio)
        if field.base_level + field.n_lods - 1 <= RENDER_MAX_LEVEL:
            origins, dirs = rays
            rgb = render_field_rays(field, field.max_lod, origins, dirs, torch.ones(3))["rgb"]
            assert torch.isfinite(rgb).all(), "a loaded field rendered non-finite colours"
        return "truncated" if caught else "loaded"
    except CaseTimeout:
        raise AssertionError(f"case ran over {time_limit_s} s") from None
    finally:
        if use_timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def probe_rays(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1) * 3.0
    return origins, torch.nn.functional.normalize(0.3 * torch.randn(n, 3, generator=gen) - origins, dim=1)


def run_fuzz(data: bytes, cases: dict[str, int] = CASES, seed: int = FUZZ_SEED, name: str = "model",
             time_limit_s: float = CASE_TIME_LIMIT_S) -> dict:
    """Runs every case on the pristine file `data`; returns counts per outcome and mutation, the case count, the
    slowest case's seconds and the total seconds. Raises AssertionError naming the first failing case."""
    rays = probe_rays()
    stats: dict = {"max_memory_ratio": 0.0}
    metadata_log = logging.getLogger("vbnf.metadata")
    metadata_log.disabled = True  # thousands of dropped-metadata lines; the bad-file tests check that line
    outcomes: Counter = Counter()
    per_mutation: dict[str, Counter] = {}
    slowest = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny loads: a thread pool only adds wake-up stalls on a busy machine
    start = time.perf_counter()
    try:
        for mutation, count in cases.items():
            per_mutation[mutation] = Counter()
            for i in range(count):
                rng = random.Random(f"{seed}/{name}/{mutation}/{i}")
                damaged = mutated_bytes(data, mutation, rng)
                t0 = time.perf_counter()
                try:
                    outcome = run_case(damaged, rays, time_limit_s, stats)
                except Exception as err:  # report which case, reproducibly
                    raise AssertionError(f"fuzz case {name}/{mutation}/{i} (seed {seed}): {type(err).__name__}: "
                                         f"{err}") from err
                slowest = max(slowest, time.perf_counter() - t0)
                outcomes[outcome] += 1
                per_mutation[mutation][outcome] += 1
    finally:
        torch.set_num_threads(threads)
        metadata_log.disabled = False
    return {"cases": sum(outcomes.values()), "outcomes": dict(outcomes), "max_memory_ratio": stats["max_memory_ratio"],
            "per_mutation": {k: dict(v) for k, v in per_mutation.items()}, "slowest_case_s": slowest,
            "total_s": time.perf_counter() - start, "seed": seed}


# ---------------------------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module", params=MODELS)
def model(request) -> tuple[str, bytes]:
    return request.param, build_model_bytes(request.param)


def test_pristine_model_loads_and_every_mutation_changes_bytes(model):
    name, data = model
    assert run_case(data, probe_rays()) == "loaded"
    changed = sum(mutated_bytes(data, m, random.Random(f"check/{m}/{i}")) != data for m in CASES for i in range(5))
    assert changed >= len(CASES) * 5 - 3  # a random JSON value can, rarely, equal the old one
    changed = sum(mutated_bytes(data, m, random.Random(f"check/{m}/{i}")) != data for m in SEMANTIC_CASES
                  for i in range(5))
    assert changed >= len(SEMANTIC_CASES) * 5 - 3


def test_fuzz_every_case_loads_or_raises_format_error(model):
    name, data = model
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = run_fuzz(data, name=name)
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"\nfuzz {name}: {report['cases']} cases in {report['total_s']:.1f} s, outcomes {report['outcomes']}, "
          f"slowest {report['slowest_case_s'] * 1e3:.0f} ms, max RSS growth {rss_growth_mb:.0f} MB")
    assert report["cases"] == sum(CASES.values()) == FUZZ_CASES // len(MODELS) - sum(SEMANTIC_CASES.values())
    assert report["outcomes"].get("format_error", 0) > report["cases"] // 3
    assert report["outcomes"].get("truncated", 0) > 50, "truncations should load their complete LODs"
    assert report["slowest_case_s"] < CASE_TIME_LIMIT_S
    assert rss_growth_mb < 512, f"memory grew by {rss_growth_mb:.0f} MB while fuzzing a {len(data)}-byte file"


def test_semantic_fuzz_every_case_loads_or_raises_format_error(model):
    """CRC-valid edits of counts, masks, levels, bits, widths, the scene box and metadata types: the checks behind
    the CRCs must hold, within the loader's memory bound."""
    name, data = model
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = run_fuzz(data, SEMANTIC_CASES, name=name)
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"\nsemantic fuzz {name}: {report['cases']} cases in {report['total_s']:.1f} s, outcomes "
          f"{report['outcomes']}, slowest {report['slowest_case_s'] * 1e3:.0f} ms, largest memory estimate "
          f"{report['max_memory_ratio']:.0f} x the file, max RSS growth {rss_growth_mb:.0f} MB")
    assert report["cases"] == sum(SEMANTIC_CASES.values())
    assert FUZZ_CASES >= 20_000
    assert report["outcomes"].get("format_error", 0) > report["cases"] // 3
    assert report["outcomes"].get("loaded", 0) > 200, "many edits keep a valid model (box, metadata types, prefixes)"
    for mutation, outcomes in report["per_mutation"].items():
        assert outcomes.get("format_error", 0) > 0 or mutation == "metadata_types", mutation
    assert rss_growth_mb < 512, f"memory grew by {rss_growth_mb:.0f} MB while fuzzing a {len(data)}-byte file"
