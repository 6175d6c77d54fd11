"""Fuzzing the .vbnf reader: thousands of damaged copies of real small model files (a dense and a vq model, built
here). Each must load (possibly with TruncatedModelWarning, and then render finite colours) or raise FormatError:
no other exception, no hang (a per-case timer), no runaway memory. Seeded; every case is reproducible alone from
(model, mutation, index): see `mutated_bytes`.

`FUZZ_CASES` is the number of cases this file runs; bench/format.py reports it and can run `run_fuzz` on real models.
"""
from __future__ import annotations

import json
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
from engine.fileformat import TruncatedModelWarning, load_model_bytes, model_layout, save_model_bytes, decode_metadata_payload
from engine.octree import morton_encode, octree_from_finest_cells
from engine.render import render_field_rays

FUZZ_SEED = 20220516
CASES = {  # mutation -> cases per model file
    "truncate": 800, "bit_flips": 1000, "insert_bytes": 400, "delete_bytes": 400, "overwrite_span": 400,
    "huge_length": 400, "json_with_crc": 700, "payload_with_crc": 600, "chunk_header_with_crc": 200,
    "header_with_crc": 100, "reorder_chunks": 100,
}
MODELS = ("dense", "vq")
FUZZ_CASES = len(MODELS) * sum(CASES.values())
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


def mutated_bytes(data: bytes, mutation: str, rng: random.Random) -> bytes:
    """One damaged copy of the pristine file `data`."""
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


def run_case(data: bytes, rays: tuple[torch.Tensor, torch.Tensor], time_limit_s: float = CASE_TIME_LIMIT_S) -> str:
    """'loaded' | 'truncated' | 'format_error'; raises AssertionError for anything else (other exceptions, a
    loaded field that does not render finite colours, a case over the time limit)."""
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
                    outcome = run_case(damaged, rays, time_limit_s)
                except Exception as err:  # report which case, reproducibly
                    raise AssertionError(f"fuzz case {name}/{mutation}/{i} (seed {seed}): {type(err).__name__}: "
                                         f"{err}") from err
                slowest = max(slowest, time.perf_counter() - t0)
                outcomes[outcome] += 1
                per_mutation[mutation][outcome] += 1
    finally:
        torch.set_num_threads(threads)
    return {"cases": sum(outcomes.values()), "outcomes": dict(outcomes),
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


def test_fuzz_every_case_loads_or_raises_format_error(model):
    name, data = model
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = run_fuzz(data, name=name)
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"\nfuzz {name}: {report['cases']} cases in {report['total_s']:.1f} s, outcomes {report['outcomes']}, "
          f"slowest {report['slowest_case_s'] * 1e3:.0f} ms, max RSS growth {rss_growth_mb:.0f} MB")
    assert report["cases"] == sum(CASES.values()) == FUZZ_CASES // len(MODELS)
    assert report["outcomes"].get("format_error", 0) > report["cases"] // 3
    assert report["outcomes"].get("truncated", 0) > 50, "truncations should load their complete LODs"
    assert report["slowest_case_s"] < CASE_TIME_LIMIT_S
    assert rss_growth_mb < 512, f"memory grew by {rss_growth_mb:.0f} MB while fuzzing a {len(data)}-byte file"
