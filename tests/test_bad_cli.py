"""The bad-input matrix of issue 13 (F9, deliver 6, and the silent wrong answers): over 250 command lines, each
of which must end with exit code 2, exactly one non-empty line on stderr, no traceback and no "internal error".

Most run in-process through engine.cli.main (importing torch 250 times would not fit CI); a few run as real
processes. The files they need come from tests/bad_inputs.py. `python bench/bad_cli.py` runs this file and records
the counts in docs/results/bad_cli.json (VBNF_BAD_CLI_RESULTS names the file the module writes its tally to).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bad_inputs import (bad_checkpoint, chain_field, f2_inflated_lods, ngp_variant, scene_variant, set_key,
                        set_pose, shell_field)
from engine.cli import main
from engine.fileformat import save_model
from engine.scenes import make_scene

REPO = Path(__file__).resolve().parents[1]
TALLY: dict[str, int] = {"command_lines": 0, "exit_2": 0, "one_line": 0, "tracebacks": 0, "internal_errors": 0,
                         "subprocess": 0}


# ---------------------------------------------------------------------------------------------------------------
# The inputs, built once


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    paths: dict[str, str] = {"tmp": str(root)}
    save_model(root / "model.vbnf", shell_field(4, 1, bits=3))
    save_model(root / "dense.vbnf", shell_field(4, 1, kind="dense"))
    paths["model"], paths["dense"] = str(root / "model.vbnf"), str(root / "dense.vbnf")
    paths["f2"] = str(f2_inflated_lods(root / "f2.vbnf"))
    save_model(root / "chain.vbnf", chain_field(15))
    paths["chain"] = str(root / "chain.vbnf")
    (root / "garbage.vbnf").write_bytes(b"not a model at all" * 10)
    (root / "empty.vbnf").write_bytes(b"")
    (root / "half.vbnf").write_bytes((root / "model.vbnf").read_bytes()[:40])
    paths.update(garbage=str(root / "garbage.vbnf"), empty=str(root / "empty.vbnf"), half=str(root / "half.vbnf"))
    (root / "exists.png").write_bytes(b"png")
    paths["exists"] = str(root / "exists.png")
    data = make_scene(root / "data", n_train=4, n_test=2, n_val=1, resolution=16)
    paths["data"] = str(data)
    paths["other_data"] = str(make_scene(root / "other", n_train=5, n_test=2, n_val=1, resolution=16))
    variants = {
        "angle0": set_key("camera_angle_x", 0), "angle_neg": set_key("camera_angle_x", -0.5),
        "angle_big": set_key("camera_angle_x", 3.5), "angle_str": set_key("camera_angle_x", "wide"),
        "angle_nan": set_key("camera_angle_x", math.nan), "angle_none": set_key("camera_angle_x", None),
        "pose_zero": set_pose(0, [[0.0] * 4 for _ in range(4)]),
        "pose_huge": set_pose(1, [[1e30, 0, 0, 1e30], [0, 1e30, 0, 0], [0, 0, 1e30, 0], [0, 0, 0, 1]]),
        "pose_far": set_pose(0, [[1, 0, 0, 1e9], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        "pose_nan": set_pose(0, [[math.nan, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        "pose_rank1": set_pose(2, [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]]),
        "pose_3x3": set_pose(0, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        "pose_str": set_pose(0, "identity"),
        "pose_bigint": set_pose(0, [[10 ** 400, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),  # beyond float
        "angle_bigint": set_key("camera_angle_x", 10 ** 4000),  # beyond float; printable (< 4,300 digits)
        "frames_empty": set_key("frames", []), "frames_dict": set_key("frames", {}),
    }
    for name, edit in variants.items():
        paths[name] = str(scene_variant(data, root / name, edit))
    ngp = {
        "ngp_angle0": set_key("camera_angle_x", 0), "ngp_fl0": set_key("fl_x", 0), "ngp_flneg": set_key("fl_x", -50),
        "ngp_flhuge": set_key("fl_x", 1e30), "ngp_fly0": set_key("fl_y", 0.0), "ngp_cx": set_key("cx", -10),
        "ngp_cy": set_key("cy", 1e9), "ngp_cx_nan": set_key("cx", math.nan), "ngp_w": set_key("w", 999),
        "ngp_scale0": set_key("scale", 0), "ngp_aabb": set_key("aabb_scale", -1), "ngp_offset": set_key("offset", [1]),
        "ngp_pose_zero": set_pose(0, [[0.0] * 4 for _ in range(4)]),
        "ngp_pose_huge": set_pose(0, [[1e300, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        "ngp_angle_y0": set_key("camera_angle_y", 0.0),
        "ngp_offset_inf": set_key("offset", [0.5, math.inf, 0.5]), "ngp_offset_bigint": set_key("offset", [10 ** 400, 0, 0]),
    }
    for name, edit in ngp.items():
        paths[name] = str(ngp_variant(data, root / name, edit))
    (root / "notjson").mkdir()
    (root / "notjson" / "transforms_train.json").write_text("{ nope")
    paths["notjson"] = str(root / "notjson")
    for name, text in {"json_longint": '{"camera_angle_x": 1' + "0" * 5000 + ', "frames": []}',
                       "json_deep": "[" * 100_000 + "]" * 100_000}.items():  # past json's digit limit / the stack
        (root / name).mkdir()
        (root / name / "transforms_train.json").write_text(text)
        paths[name] = str(root / name)
    (root / "nodata").mkdir()
    paths["nodata"] = str(root / "nodata")
    paths["file_as_data"] = paths["exists"]
    # a trained run to resume, and checkpoints of the wrong kind
    run = root / "run"
    assert main(["train", paths["data"], "--out", str(run), "--max-level", "3", "--base-level", "1", "--bits", "3",
                 "--feature-dim", "4", "--steps", "2", "--batch", "32", "--quiet", "--device", "cpu"]) == 0
    paths["run"] = str(run)
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    broken = {
        "step_str": ("step", "x"), "step_neg": ("step", -1), "step_float": ("step", 1.5), "kind_int": ("kind", 5),
        "kind_bad": ("kind", "octopus"), "bits_str": ("bits", "six"), "bits_big": ("bits", 99),
        "bits_list": ("bits", [3, "a"]), "fdim_float": ("feature_dim", 2.5), "fdim_zero": ("feature_dim", 0),
        "base_none": ("base_level", None), "center_list": ("scene_center", [0, 0, 0]),
        "center_shape": ("scene_center", torch.zeros(2)), "half_neg": ("scene_half_size", -1.0),
        "half_str": ("scene_half_size", "big"), "cells_dict": ("cells", {}), "cells_float": ("cells", [torch.zeros(1)]),
        "field_list": ("field", []), "field_shape": ("field", {k: v[:1] for k, v in good["field"].items()}),
        "format": ("format", "other-1"), "settings": ("settings", 3), "history": ("history", 7),
        "dataset": ("dataset", "lego"), "optimizers": ("optimizers", "adam"),
    }
    for name, (key, value) in broken.items():
        d = root / f"ckpt_{name}"
        d.mkdir()
        torch.save(bad_checkpoint(good, key, value), d / "checkpoint.pt")
        paths[f"ckpt_{name}"] = str(d)
    for name, content in {"ckpt_trunc": (run / "checkpoint.pt").read_bytes()[:100], "ckpt_garbage": b"\x00" * 64}.items():
        d = root / name
        d.mkdir()
        (d / "checkpoint.pt").write_bytes(content)
        paths[name] = str(d)
    d = root / "ckpt_notdict"
    d.mkdir()
    torch.save([1, 2, 3], d / "checkpoint.pt")
    paths["ckpt_notdict"] = str(d)
    # the same data set with other transforms content (same counts): a changed pose
    paths["data_edited"] = str(scene_variant(Path(paths["data"]), root / "data_edited",
                                             lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, 0.123)))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# The matrix: (id, argv with {placeholders} from `inputs`)


def _int_option_cases(command: list[str], option: str, bad: list[str]) -> list[tuple[str, list[str]]]:
    return [(f"{command[0]} {option} {v!r}", command + [option, v]) for v in bad]


TRAIN = ["train", "{data}", "--out", "{tmp}/new_run", "--device", "cpu", "--quiet"]
RENDER = ["render", "{model}", "--out", "{tmp}/r.png", "--device", "cpu"]
COMPARE = ["compare", "{model}", "--out", "{tmp}/c.png"]
EVAL = ["eval", "{model}", "{data}", "--device", "cpu"]
CONVERT = ["convert", "{model}", "--out", "{tmp}/conv.vbnf"]
SCENE = ["make-scene", "{tmp}/fresh_scene"]
NOT_INT = ["abc", "1.5", "", "1e3", "0x10", "--", "nan"]

CASES: list[tuple[str, list[str]]] = []
# --- integers and counts that must be positive (train)
for opt in ("--steps", "--batch", "--checkpoint-every", "--max-level", "--base-level", "--feature-dim", "--downscale"):
    CASES += _int_option_cases(TRAIN, opt, ["0", "-5", "-1"] + NOT_INT)
CASES += _int_option_cases(TRAIN, "--steps", ["99999999999"])
CASES += _int_option_cases(TRAIN, "--batch", ["999999999"])
CASES += _int_option_cases(TRAIN, "--max-level", ["13", "30"])
CASES += _int_option_cases(TRAIN, "--feature-dim", ["100000"])
CASES += _int_option_cases(TRAIN, "--seed", ["-1", "abc", "1.5"])
for opt in ("--lr", "--grid-lr", "--codebook-lr"):
    CASES += _int_option_cases(TRAIN, opt, ["0", "-0.1", "nan", "inf", "fast"])
CASES += _int_option_cases(TRAIN, "--bits", ["0", "17", "-3", "a", "3,x", "", "3,,3"])
CASES += [("train --grid octopus", TRAIN + ["--grid", "octopus"]),
          ("train --optimizer sgd", TRAIN + ["--optimizer", "sgd"]),
          ("train --device tpu", TRAIN + ["--device", "tpu"]),
          ("train --device cuda:99", TRAIN + ["--device", "cuda:99"]),
          ("train --bits 3,3 for 4 levels", TRAIN + ["--bits", "3,3", "--max-level", "4"]),
          ("train base above max", TRAIN + ["--base-level", "5", "--max-level", "4"]),
          ("train --max-level 12 (memory)", TRAIN + ["--max-level", "12"]),
          ("train --max-level 12 dense (memory)", TRAIN + ["--max-level", "12", "--grid", "dense"]),
          ("train --max-level 11 bits 16 (memory)", TRAIN + ["--max-level", "11", "--bits", "16"]),
          ("train unknown option", TRAIN + ["--colour", "red"]),
          ("train no data", ["train"]),
          ("train existing run", ["train", "{data}", "--out", "{run}", "--device", "cpu"]),
          ("train resume without checkpoint", TRAIN + ["--resume"])]
CASES += [(f"train --lod-bias {v!r}", TRAIN + ["--lod-bias", v]) for v in ["0", "-2", "nan", "inf", "1e9", "x", ""]]
# --- data sets the loaders must refuse in one line
DATA_CASES = ["angle0", "angle_neg", "angle_big", "angle_str", "angle_nan", "angle_none", "pose_zero", "pose_huge",
              "pose_bigint", "angle_bigint", "ngp_offset_inf", "ngp_offset_bigint", "json_longint", "json_deep",
              "pose_far", "pose_nan", "pose_rank1", "pose_3x3", "pose_str", "frames_empty", "frames_dict",
              "ngp_angle0", "ngp_fl0", "ngp_flneg", "ngp_flhuge", "ngp_fly0", "ngp_cx", "ngp_cy", "ngp_cx_nan", "ngp_w",
              "ngp_scale0", "ngp_aabb", "ngp_offset", "ngp_pose_zero", "ngp_pose_huge", "ngp_angle_y0", "notjson",
              "nodata", "file_as_data"]
for name in DATA_CASES:
    CASES.append((f"train data:{name}", ["train", "{%s}" % name, "--out", "{tmp}/run_%s" % name, "--device", "cpu"]))
    CASES.append((f"eval data:{name}", ["eval", "{model}", "{%s}" % name, "--split", "train", "--device", "cpu"]))
CASES.append(("train missing data", ["train", "{tmp}/no/such/folder", "--out", "{tmp}/x", "--device", "cpu"]))
# --- --resume: another data set, contradicting options, damaged checkpoints
RESUME = ["train", "{data}", "--out", "{run}", "--device", "cpu", "--quiet", "--resume"]
CASES += [("resume other data set", ["train", "{other_data}", "--out", "{run}", "--device", "cpu", "--resume"]),
          ("resume edited transforms", ["train", "{data_edited}", "--out", "{run}", "--device", "cpu", "--resume"]),
          ("resume --downscale 2", RESUME + ["--downscale", "2"]),
          ("resume --grid dense", RESUME + ["--grid", "dense"]),
          ("resume --grid random", RESUME + ["--grid", "random"]),
          ("resume --bits 5", RESUME + ["--bits", "5"]),
          ("resume --bits 3,3,3", RESUME + ["--bits", "3,3,3"]),
          ("resume --max-level 5", RESUME + ["--max-level", "5"]),
          ("resume --base-level 2", RESUME + ["--base-level", "2"]),
          ("resume --feature-dim 8", RESUME + ["--feature-dim", "8"])]
for name in ("step_str", "step_neg", "step_float", "kind_int", "kind_bad", "bits_str", "bits_big", "bits_list",
             "fdim_float", "fdim_zero", "base_none", "center_list", "center_shape", "half_neg", "half_str", "cells_dict",
             "cells_float", "field_list", "field_shape", "format", "settings", "history", "dataset", "optimizers",
             "trunc", "garbage", "notdict"):
    CASES.append((f"resume checkpoint:{name}", ["train", "{data}", "--out", "{ckpt_%s}" % name, "--device", "cpu",
                                                "--quiet", "--resume"]))
# --- render
for v in ["0x0", "-1x5", "axb", "100", "100x", "x100", "20000x10", "1x1x1", "10x0", " ", "1.5x2"]:
    CASES.append((f"render --size {v!r}", RENDER + ["--size", v]))
for v in ["0", "-5", "180", "nan", "inf", "abc", "0.5"]:
    CASES.append((f"render --fov {v!r}", RENDER + ["--fov", v]))
for v in ["99", "4", "-2", "a"]:
    CASES.append((f"render --lod {v!r}", RENDER + ["--lod", v]))
for v in ["0", "-1", "abc", "1.5"]:
    CASES.append((f"render --max-bytes {v!r}", RENDER + ["--max-bytes", v]))
for v in ["a,b", "1,2", "1,2,0", "1,2,-3", "1,2,nan", "", "1,2,3,4", "1,inf,3", "1,2,1e9"]:
    CASES.append((f"render --camera {v!r}", RENDER + ["--camera", v]))
for v in ["2,0,0", "a", "1,1", "-1,0,0", "nan,0,0"]:
    CASES.append((f"render --background {v!r}", RENDER + ["--background", v]))
CASES += [("render --mode fancy", RENDER + ["--mode", "fancy"]),
          ("render no --out", ["render", "{model}"]),
          ("render existing --out", ["render", "{model}", "--out", "{exists}", "--device", "cpu"]),
          ("render --device tpu", RENDER + ["--device", "tpu"]),
          ("render --device cuda:7", RENDER + ["--device", "cuda:7"]),
          ("render --max-bytes 2**62 of a 40-byte prefix", ["render", "{half}", "--out", "{tmp}/r.png",
                                                              "--max-bytes", str(2 ** 62), "--device", "cpu"])]
for name in ("f2", "chain", "garbage", "empty", "half"):
    CASES.append((f"render model:{name}", ["render", "{%s}" % name, "--out", "{tmp}/r_%s.png" % name, "--size",
                                           "16x16", "--device", "cpu"]))
    CASES.append((f"compare model:{name}", ["compare", "{%s}" % name, "--out", "{tmp}/c_%s.png" % name,
                                            "--size", "16"]))
    CASES.append((f"info model:{name}", ["info", "{%s}" % name]) if name in ("garbage", "empty", "half") else
                 (f"render --mode level model:{name}", ["render", "{%s}" % name, "--out", "{tmp}/l.png", "--mode",
                                                        "level", "--size", "16x16", "--device", "cpu"]))
CASES += [("render missing model", ["render", "{tmp}/nope.vbnf", "--out", "{tmp}/r.png"]),
          ("render folder as model", ["render", "{tmp}", "--out", "{tmp}/r.png"])]
# --- compare
for v in ["a,b", "1", "1,2,3,4", "1,nan", "1,2,0", "1,2,-1", ""]:
    CASES.append((f"compare --camera {v!r}", COMPARE + ["--camera", v]))
for v in ["0", "5000", "abc", "-16"]:
    CASES.append((f"compare --size {v!r}", COMPARE + ["--size", v]))
for v in ["99", "-1", "a", "1,,x"]:
    CASES.append((f"compare --lod {v!r}", COMPARE + ["--lod", v]))
for v in ["0", "17", "a"]:
    CASES.append((f"compare --bits {v!r}", COMPARE + ["--bits", v]))
for v in ["0", "200", "nan", "x"]:
    CASES.append((f"compare --fov {v!r}", COMPARE + ["--fov", v]))
CASES += [("compare --mode fancy", COMPARE + ["--mode", "fancy"]),
          ("compare --bits on dense", ["compare", "{dense}", "--bits", "2", "--out", "{tmp}/c.png"]),
          ("compare missing model", ["compare", "{tmp}/nope.vbnf"])]
# --- eval
CASES += [("eval --lods 99", EVAL + ["--lods", "99"]), ("eval --lods a", EVAL + ["--lods", "a"]),
          ("eval --lods ''", EVAL + ["--lods", ""]), ("eval --lods -1", EVAL + ["--lods", "-1"]),
          ("eval --max-images 0", EVAL + ["--max-images", "0"]), ("eval --max-images -3", EVAL + ["--max-images", "-3"]),
          ("eval --downscale 0", EVAL + ["--downscale", "0"]), ("eval --split bogus", EVAL + ["--split", "bogus"]),
          ("eval --renderer opengl", EVAL + ["--renderer", "opengl"]),
          ("eval missing model", ["eval", "{tmp}/nope.vbnf", "{data}"]),
          ("eval missing data", ["eval", "{model}", "{tmp}/nope"]),
          ("eval garbage model", ["eval", "{garbage}", "{data}"]),
          ("eval model:f2", ["eval", "{f2}", "{data}", "--split", "train", "--device", "cpu"]),
          ("eval model:chain", ["eval", "{chain}", "{data}", "--split", "train", "--device", "cpu"]),
          ("eval --json into a missing folder", EVAL + ["--lods", "0", "--max-images", "1", "--json",
                                                        "{tmp}/no/such/dir/rows.json"])]
if not torch.cuda.is_available():
    CASES += [("eval --renderer cuda without CUDA", EVAL + ["--renderer", "cuda"]),
              ("eval --device cuda without CUDA", ["eval", "{model}", "{data}", "--device", "cuda"]),
              ("render --device cuda without CUDA", RENDER + ["--device", "cuda"]),
              ("train --device cuda without CUDA", TRAIN[:-3] + ["--device", "cuda"])]
# --- info, convert, make-scene, view, the top level
CASES += [("info missing", ["info", "{tmp}/nope.vbnf"]), ("info folder", ["info", "{tmp}"]),
          ("info --json missing", ["info", "{tmp}/nope.vbnf", "--json"])]
# (`vbnf info` without a model is not an error: it describes the bundled default model)
for v in ["0", "17", "a", "-2", ""]:
    CASES.append((f"convert --bits {v!r}", CONVERT + ["--bits", v]))
CASES += [("convert existing --out", ["convert", "{model}", "--bits", "2", "--out", "{exists}"]),
          ("convert --seed -1", CONVERT + ["--bits", "2", "--seed", "-1"]),
          ("convert missing model", ["convert", "{tmp}/nope.vbnf", "--bits", "2"]),
          ("convert garbage model", ["convert", "{garbage}", "--bits", "2", "--out", "{tmp}/g.vbnf"]),
          ("convert no --bits", ["convert", "{model}"])]
for opt, bad in (("--resolution", ["0", "-1", "a", "99999"]), ("--train", ["0", "-1", "x"]), ("--test", ["-1", "y"]),
                 ("--val", ["-2"]), ("--seed", ["-1", "s"])):
    CASES += _int_option_cases(SCENE, opt, bad)
CASES += [("make-scene onto a data set", ["make-scene", "{data}"]),
          ("make-scene onto a file", ["make-scene", "{exists}"]),
          ("make-scene --name bogus", SCENE + ["--name", "bogus"])]
VIEW = ["view", "--headless", "--screenshot", "--output-dir", "{tmp}/shots"]
CASES += [("view --size 0x0", VIEW + ["{model}", "--size", "0x0"]), ("view --size abc", VIEW + ["{model}", "--size", "abc"]),
          ("view --size 5x5", VIEW + ["{model}", "--size", "5x5"]), ("view missing model", VIEW + ["{tmp}/nope.vbnf"]),
          ("view screenshot of a model that cannot render", VIEW + ["{f2}", "--size", "64x48"])]
CASES += [("unknown command", ["frobnicate"]), ("no command", []), ("bad first option", ["--version"])]


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # main returns; an exit here is itself a failure of the contract
        code = f"SystemExit({e.code})"
    return code, capsys.readouterr().err


def check(code, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    TALLY["command_lines"] += 1
    TALLY["exit_2"] += code == 2
    TALLY["one_line"] += len(lines) == 1
    TALLY["tracebacks"] += "Traceback" in err
    TALLY["internal_errors"] += "internal error" in err
    log = os.environ.get("VBNF_BAD_CLI_LOG")  # every message, for reading them all at once
    if log:
        with open(log, "a") as f:
            f.write(f"{code} {' | '.join(lines)}\n")
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert code == 2, f"exit code {code}: {err}"


@pytest.fixture(scope="module", autouse=True)
def _write_tally():
    yield
    target = os.environ.get("VBNF_BAD_CLI_RESULTS")
    if target:
        Path(target).write_text(json.dumps(TALLY, indent=2) + "\n")


@pytest.fixture
def tight_memory(monkeypatch):
    """A 24 GiB machine, whatever this one has (the level-count refusal must not depend on the test machine)."""
    import engine.train_cli
    monkeypatch.setattr(engine.train_cli, "available_memory", lambda device: 24 * 2 ** 30)


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line_is_one_line_and_exit_2(argv, inputs, capsys, tight_memory):
    code, err = run_in_process([a.format(**inputs) for a in argv], capsys)
    check(code, err)


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 250, len(CASES)


def test_an_unreadable_data_folder_is_one_line(inputs, capsys, monkeypatch, tmp_path):
    """PermissionError while looking into the data set folder (chmod 000 where this is not root; else simulated)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0)
    else:
        import engine.data
        original = engine.data.find_transforms

        def denied(path, split):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(engine.data, "find_transforms", denied)
    try:
        code, err = run_in_process(["train", str(folder / "sub"), "--out", str(tmp_path / "r"), "--device", "cpu"],
                                   capsys)
        check(code, err)
        assert "permission denied" in err.lower()
    finally:
        folder.chmod(0o755)


def test_the_messages_name_what_is_wrong(inputs, capsys, tight_memory):
    """A sample of the matrix: the line says what differs or what the range is."""
    expect = {
        ("render", "{model}", "--out", "{tmp}/r.png", "--lod", "99"): "LOD 0..3",
        ("train", "{data}", "--out", "{tmp}/x", "--steps", "-5"): "must be between 1",
        ("train", "{data}", "--out", "{tmp}/x", "--max-level", "12", "--device", "cpu"): "GiB",
        ("train", "{data}", "--out", "{run}", "--resume", "--grid", "dense"): "--grid dense (checkpoint: vq)",
        ("train", "{other_data}", "--out", "{run}", "--resume"): "image count 4 -> 5",
        ("train", "{data}", "--out", "{ckpt_kind_int}", "--resume"): "'kind'",
        ("make-scene", "{data}"): "--force",
        ("render", "{model}", "--out", "{tmp}/r.png", "--size", "0x0"): "between 1 and",
    }
    for argv, needle in expect.items():
        code, err = run_in_process([a.format(**inputs) for a in argv], capsys)
        assert code == 2 and needle in err, (argv, err)


def test_resume_of_an_old_checkpoint_without_fingerprint_warns_and_runs(inputs, capsys, tmp_path):
    import shutil
    run = tmp_path / "old_run"
    shutil.copytree(inputs["run"], run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    del ckpt["dataset"]
    torch.save(ckpt, run / "checkpoint.pt")
    code = main(["train", inputs["data"], "--out", str(run), "--steps", "3", "--batch", "32", "--quiet",
                 "--device", "cpu", "--resume"])
    err = capsys.readouterr().err
    assert code == 0 and "cannot be checked" in err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["dataset"]["images"] == 4


def test_resume_with_the_same_options_spelled_out_runs(inputs, capsys, tmp_path):
    import shutil
    run = tmp_path / "same"
    shutil.copytree(inputs["run"], run)
    code = main(["train", inputs["data"], "--out", str(run), "--max-level", "3", "--base-level", "1", "--bits", "3",
                 "--feature-dim", "4", "--grid", "vq", "--steps", "3", "--batch", "32", "--quiet", "--device", "cpu",
                 "--resume"])
    assert code == 0, capsys.readouterr().err


def test_defaults_are_not_refused_by_the_memory_check(inputs, monkeypatch):
    """max-level 8 vq6 on a 24 GB GPU passes the estimate made before carving, and 6 on the CPU passes both
    estimates (a dense 8^level worst case would refuse level 8)."""
    import argparse
    import engine.train_cli as tc
    from engine.data import load_dataset
    from engine.occupancy import initial_octree
    dataset = load_dataset(inputs["data"], "train")
    monkeypatch.setattr(tc, "available_memory", lambda d: 24 * 2 ** 30)
    probe = initial_octree(dataset.cameras, dataset.alphas, dataset.scene_center, dataset.scene_half_size, 5)
    gpu = argparse.Namespace(grid="vq", bits=6, feature_dim=16, base_level=2, max_level=8)
    lower = tc.surface_corner_estimate(int(probe.cells[-1].numel()), 5, 2, 8)
    tc.check_fits("estimate", lower, gpu, torch.device("cuda"), 24 * 2 ** 30, tc.CUDA_BATCH)
    # the carved lego at level 8 (about 1.3M corners, docs/results/train_memory.md) passes too
    tc.check_fits("estimate", 1_300_000, gpu, torch.device("cuda"), 24 * 2 ** 30, tc.CUDA_BATCH)
    with pytest.raises(tc.VbnfError, match="GiB"):  # the dense worst case of level 8 would not pass
        tc.check_fits("estimate", 257 ** 3, gpu, torch.device("cuda"), 24 * 2 ** 30, tc.CUDA_BATCH)
    cpu = argparse.Namespace(grid="vq", bits=6, feature_dim=16, base_level=2, max_level=6)
    assert tc.carved_octree_that_fits(dataset, cpu, torch.device("cpu"), 4096).max_level == 6


# ---------------------------------------------------------------------------------------------------------------
# A few as real processes: the installed behaviour, signals and pipes included


def _subprocess(args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("VBNF_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=str(REPO), **kw)


@pytest.mark.parametrize("argv", [
    ["train", "{data}", "--out", "{tmp}/p", "--steps", "-5"],
    ["render", "{f2}", "--out", "{tmp}/p.png", "--size", "16x16", "--device", "cpu"],
], ids=["train --steps -5", "render F2 model"])
def test_as_a_process(argv, inputs):
    result = _subprocess([a.format(**inputs) for a in argv])
    TALLY["subprocess"] += 1
    check(result.returncode, result.stderr)


def test_a_closed_pipe_exits_quietly(inputs):
    """`vbnf info MODEL | head -1`: the reader goes away; no BrokenPipeError, exit 0."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "info", inputs["model"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    proc.stdout.close()  # before the command prints anything
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert proc.returncode == 0 and err.strip() == "", err
