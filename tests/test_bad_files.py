"""Hostile but CRC-valid model files, one generator per bad-input class (tests/vbnf_forge.py): the loader refuses
what it cannot justify before allocating (F1, F2, F4), bounded in memory (measured in a child process under an
address-space limit); metadata of the wrong type is dropped with a logged line and never crashes a command (F6, F7);
a partial file is treated alike by every command; `vbnf info` checks CRCs.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from engine import limits
from engine.cli import main as vbnf_main
from engine.errors import FormatError
from engine.fileformat import TruncatedModelWarning, load_model_bytes, load_working_bytes, model_layout
from tests import vbnf_forge as forge

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory) -> Path:
    """A 2-view data set at 16x16 (enough for `vbnf eval`)."""
    from engine.scenes import make_scene
    return make_scene(tmp_path_factory.mktemp("tiny"), n_train=1, n_test=1, n_val=1, resolution=16)


def _load(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_model_bytes(data, source="bad.vbnf")


# ---------------------------------------------------------------------------------------------------------------
# F1: counts checked before the octree is built


def test_f1_full_masks_with_few_corners_is_refused_from_the_metadata():
    data = forge.f1_full_masks_few_corners(8)  # 2.4 MB; the old loader built 16.7 M cells before comparing
    assert len(data) > 2_000_000
    with pytest.raises(FormatError, match=r"grid\.levels\[0\]\.corners must be .* got 8 at byte 32$"):
        _load(data)


def test_f1_fewest_corners_allowed_is_caught_by_the_octree():
    with pytest.raises(FormatError, match=r"the octree gives LOD 0 35937 corners but the metadata says 32768 at byte"):
        _load(forge.f1_full_masks_min_corners(5))


def test_a_valid_full_grid_model_loads():
    field = _load(forge.full_octree_file(4))
    assert field.levels[0].indices.numel() == 17 ** 3 and field.octree.cells[4].numel() == 8 ** 4


def test_a_chunk_table_entry_without_its_lod_is_refused():
    doc, chunks = forge.split_file(forge.small_model_bytes("dense"))
    data = forge.join_file(doc, chunks)
    del doc["structure"]["chunks"][0]["lod"]  # the decoder's (null) LOD, left out; found by bench/bad_input.py
    with pytest.raises(FormatError, match=r"structure\.chunks\[0\] must be the decoder chunk of LOD None"):
        _load(forge.join_file(doc, chunks, fix_table=False))
    assert _load(data).max_lod == 3


# ---------------------------------------------------------------------------------------------------------------
# F2 (loader side): LOD counts and deep chains


def test_f2_raised_n_lods_is_kept_within_the_octree_limit():
    field = _load(forge.f2_raised_n_lods(19))  # base 1 + 19 LODs reach octree level 19 <= 20: a valid claim
    assert field.n_lods == 19 and len(field.levels) == 4
    with pytest.raises(FormatError, match=r"grid\.n_lods must be an integer in 1\.\.20, got 21 at byte 32"):
        _load(forge.f2_raised_n_lods(21))


@pytest.mark.parametrize("depth", [10, 15, 20])
def test_f2_single_cell_chains_load_in_little_memory(depth):
    data = forge.f2_chain(depth)
    field = _load(data)
    assert len(field.levels) == depth and field.octree.max_level == depth
    assert all(c.numel() == 1 for c in field.octree.cells)
    grid = model_layout(data).structure["grid"]
    assert load_working_bytes(grid, depth) < 20 * len(data)


def test_octree_levels_past_the_limit_are_refused():
    with pytest.raises(FormatError, match=r"grid\.n_lods must be an integer in 1\.\.1, got 2"):
        _load(forge.f2_chain(limits.MAX_OCTREE_LEVEL + 1, base_level=limits.MAX_OCTREE_LEVEL))


# ---------------------------------------------------------------------------------------------------------------
# F4: the scene box


@pytest.mark.parametrize("half_size, center, field", [
    (5e-324, (0.0, 0.0, 0.0), "scene.half_size"),
    (1e-20, (0.0, 0.0, 0.0), "scene.half_size"),
    (1e12, (0.0, 0.0, 0.0), "scene.half_size"),
    (1.0, (1e30, 0.0, 0.0), "scene.center"),
    (5e-324, (1e30, 0.0, 0.0), "scene.half_size"),
    (1e-3, (0.0, 0.0, 2e3), "scene.center"),
    (0.0, (0.0, 0.0, 0.0), "scene.half_size"),
])
def test_f4_scene_boxes_the_renderers_cannot_use_are_refused(half_size, center, field):
    with pytest.raises(FormatError, match=rf"{field}.* at byte 32$"):
        _load(forge.f4_scene_box(half_size, center))


@pytest.mark.parametrize("half_size, center", [(1e-9, (0.0, 0.0, 1e-3)), (1e9, (1e9, -1e9, 0.0)), (1.0, (1e6, 0, 0))])
def test_f4_scene_boxes_at_the_limits_load(half_size, center):
    field = _load(forge.f4_scene_box(half_size, center))
    assert field.scene_half_size == half_size


# ---------------------------------------------------------------------------------------------------------------
# F6 / F7: metadata that is not structure


def test_f6_dense_level_without_bits_works_in_info_and_convert(tmp_path, capsys):
    path = tmp_path / "dense.vbnf"
    path.write_bytes(forge.f6_dense_without_bits())
    assert vbnf_main(["info", str(path)]) == 0
    assert vbnf_main(["info", str(path), "--json"]) == 0
    assert vbnf_main(["convert", str(path), "--bits", "2", "--out", str(tmp_path / "k.vbnf")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyError" not in err
    assert _load((tmp_path / "k.vbnf").read_bytes()).bits == 2


@pytest.mark.parametrize("name", sorted(forge.F7_BAD_METADATA))
def test_f7_wrong_metadata_types_are_dropped_with_one_logged_line(name, caplog):
    with caplog.at_level(logging.WARNING, logger="vbnf.metadata"):
        field = _load(forge.f7_bad_metadata(name))
    records = [r for r in caplog.records if r.name == "vbnf.metadata"]
    assert len(records) == 1 and "\n" not in records[0].getMessage() and "bad.vbnf" in records[0].getMessage()
    for key in ("metrics", "provenance"):
        assert isinstance(field.metadata.get(key, {}), dict)
    assert isinstance(field.metadata.get("conversions", []), list)
    assert isinstance(field.metadata.get("dataset", ""), str)


@pytest.mark.parametrize("name", sorted(forge.F7_BAD_METADATA))
def test_f7_commands_run_on_wrong_metadata_types(name, tmp_path, capsys):
    from viewer.field_source import FieldSource, lod_psnr
    path = tmp_path / "m.vbnf"
    path.write_bytes(forge.f7_bad_metadata(name))
    assert vbnf_main(["info", str(path)]) == 0
    assert vbnf_main(["convert", str(path), "--bits", "2", "--out", str(tmp_path / "c.vbnf")]) == 0
    source = FieldSource.open(path)  # what `vbnf view` and `vbnf compare` open
    assert isinstance(lod_psnr(source.full.field.metadata), dict)
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_f7_compare_and_eval_store_run_on_wrong_metadata_types(tmp_path, tiny_scene, capsys):
    for name in ("metrics_list", "conversions_int", "metrics_bad_values"):
        path = tmp_path / f"{name}.vbnf"
        path.write_bytes(forge.f7_bad_metadata(name))
        assert vbnf_main(["compare", str(path), "--size", "16", "--lod", "0", "--out",
                          str(tmp_path / f"{name}.png")]) == 0
        assert vbnf_main(["eval", str(path), str(tiny_scene), "--max-images", "1", "--lods", "0",
                          "--device", "cpu", "--store"]) == 0
        stored = _load(path.read_bytes()).metadata["metrics"]
        assert [r["lod"] for r in stored["test_per_lod"]] == [0]
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Partial files alike everywhere; `vbnf info` checks CRCs


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> tuple[Path, int, int]:
    """A model cut inside LOD 2: (path, bytes present, bytes of the whole file)."""
    data = forge.small_model_bytes("vq")
    layout = model_layout(data)
    cut = layout.lod_prefix_bytes[1] + 30
    path = tmp_path_factory.mktemp("partial") / "p.vbnf"
    path.write_bytes(data[:cut])
    return path, cut, len(data)


def _one_note(err: str, cut: int, total: int) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    notes = [line for line in lines if "partial:" in line]
    assert len(notes) == 1, err
    assert f"partial: {cut} of {total} bytes, 2 of 4 LODs present" in notes[0]
    assert "Warning" not in err and "warnings.warn" not in err and "Traceback" not in err


def test_every_command_loads_a_partial_file_and_says_how_much_is_there(partial, tmp_path, tiny_scene, capsys):
    path, cut, total = partial
    commands = {
        "render": ["render", str(path), "--out", str(tmp_path / "r.png"), "--size", "16x16", "--device", "cpu"],
        "convert": ["convert", str(path), "--bits", "2", "--out", str(tmp_path / "c.vbnf")],
        "eval": ["eval", str(path), str(tiny_scene), "--max-images", "1", "--device", "cpu"],
        "compare": ["compare", str(path), "--size", "16", "--out", str(tmp_path / "cmp.png")],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert vbnf_main(argv) == 0, name
        _one_note(capsys.readouterr().err, cut, total)
    assert vbnf_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"(partial: {cut} of {total} bytes, 2 of 4 LODs present)" in out and "(complete)" not in out


def test_the_viewer_opens_a_partial_file(partial):
    from viewer.field_source import FieldSource
    path, cut, total = partial
    with pytest.warns(TruncatedModelWarning, match=rf"partial: {cut} of {total} bytes, 2 of 4 LODs present"):
        source = FieldSource.open(path)
    assert source.full.field.max_lod == 1 and source.lods_in_budget(None) == 2
    assert source.converted(None, None).field is source.full.field
    assert source.converted(None, 10 ** 9).field is source.full.field


def test_info_checks_crcs_and_names_the_damaged_chunk(tmp_path, capsys):
    data = bytearray(forge.small_model_bytes("vq"))
    layout = model_layout(bytes(data))
    chunk = next(c for c in layout.chunks if c.kind == "indices" and c.lod == 2)
    data[chunk.offset + 20] ^= 0x10
    path = tmp_path / "flipped.vbnf"
    path.write_bytes(bytes(data))
    assert vbnf_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(complete)" not in out
    assert f"damaged: the indices chunk of LOD 2 (bytes {chunk.offset}..{chunk.end}) fails its CRC check" in out
    assert "2 of 4 LODs intact" in out and "(damaged)" in out
    assert vbnf_main(["info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chunk_states"].count("damaged") == 1 and report["state"].startswith("damaged")


def test_info_on_an_intact_file_says_every_chunk_is_intact(tmp_path, capsys):
    path = tmp_path / "ok.vbnf"
    path.write_bytes(forge.small_model_bytes("dense"))
    assert vbnf_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(complete)" in out and "chunks: all 10 chunks intact (CRC checked)" in out


# ---------------------------------------------------------------------------------------------------------------
# The memory bound, measured in a child process under an address-space limit

CHILD = r"""
import json, resource, sys, warnings
import torch
torch.set_num_threads(1)
from engine.errors import FormatError
from engine.fileformat import load_model_bytes, load_working_bytes, model_layout
from engine import limits

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

warnings.simplefilter("ignore")
load_model_bytes(open("assets/default.vbnf", "rb").read())  # warm-up: imports, allocator pools
rows = []
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    bound = limits.LOAD_BYTES_PER_FILE_BYTE * len(data) + limits.LOAD_ALLOWANCE_BYTES
    slack = 256 << 20  # allocator and address-space overhead (arenas, page rounding), not loader data
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + bound + slack, hard))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident size (VmHWM)
        measured = True
    except OSError:  # some sandboxes forbid it: then only the address-space limit is checked
        measured = False
    base = status("VmRSS")
    try:
        field = load_model_bytes(data, source=path)
        layout = model_layout(data)
        outcome, estimate = "loaded", load_working_bytes(layout.structure["grid"], len(field.levels))
    except FormatError as err:
        outcome, estimate = "format_error", None
    except BaseException as err:
        outcome, estimate = f"{type(err).__name__}: {err}", None
    field = None
    rows.append({"path": path, "bytes": len(data), "outcome": outcome,
                 "peak_growth": status("VmHWM") - base if measured else None,
                 "bound": bound, "estimate": estimate})
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
print(json.dumps(rows))
"""


def measure_loads(paths: list[Path]) -> list[dict]:
    """Loads each file in one child process (fresh from the parent's allocations) under RLIMIT_AS = its address
    space after the imports + the stated bound + 256 MiB; per file: outcome, peak resident growth, bound, the
    loader's own estimate."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc to measure memory")
def test_no_file_makes_the_loader_exceed_its_memory_bound(tmp_path):
    files = {
        "f1_few_corners": forge.f1_full_masks_few_corners(8),
        "f1_min_corners": forge.f1_full_masks_min_corners(6),
        "full_grid_1bit": forge.full_octree_file(6),
        "shell_1bit": forge.small_model_bytes("vq", max_level=6, bits=1, feature_dim=1),
        "shell_dense": forge.small_model_bytes("dense", max_level=6, feature_dim=8),
        "chain_20": forge.f2_chain(20),
        "n_lods_19": forge.f2_raised_n_lods(19),
    }
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / f"{name}.vbnf")
        paths[-1].write_bytes(data)
    rows = measure_loads(paths)
    for row in rows:
        name = Path(row["path"]).stem
        assert row["outcome"] in ("loaded", "format_error"), f"{name}: {row['outcome']}"  # e.g. MemoryError
        if row["peak_growth"] is None:
            continue
        assert row["peak_growth"] <= row["bound"], f"{name}: {row}"
        if row["estimate"] is not None:  # the loader's estimate bounds what it really used
            assert row["peak_growth"] <= row["estimate"] + limits.LOAD_ALLOWANCE_BYTES, f"{name}: {row}"
    outcomes = {Path(r["path"]).stem: r["outcome"] for r in rows}
    assert outcomes["f1_few_corners"] == outcomes["f1_min_corners"] == "format_error"
    assert outcomes["full_grid_1bit"] == outcomes["chain_20"] == outcomes["shell_dense"] == "loaded"
