"""Fuzzing the data-set loader: random edits of a transforms JSON (Blender and instant-ngp forms, the JSON mutations
of tests/test_fuzz_format.py). Each must load or raise one line of VbnfError: no other exception, no hang. Seeded;
a failing case names its index. (At new seeds these found integers beyond float in poses and offsets, 2026-12-03.)"""
from __future__ import annotations

import json
import random
import signal

import pytest

from bad_inputs import ngp_variant
from engine.data import load_dataset
from engine.errors import VbnfError
from engine.scenes import make_scene
from test_fuzz_format import _mutate_json

CASES = 1000  # per form
CASE_TIME_LIMIT_S = 10


def _on_alarm(signum, frame):
    raise TimeoutError(f"a case took more than {CASE_TIME_LIMIT_S} s")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzdata")
    blender = make_scene(root / "blender", n_train=6, n_test=1, n_val=1, resolution=16)

    def ngp_keys(meta):
        meta.update({"fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 8.0, "k1": 0.01, "k2": 0.0, "p1": 0.0, "p2": 0.0,
                     "aabb_scale": 2, "scale": 0.33, "offset": [0.5, 0.5, 0.5]})
    return {"blender": (blender, "transforms_train.json"),
            "ngp": (ngp_variant(blender, root / "ngp", ngp_keys), "transforms.json")}


@pytest.mark.parametrize("form", ["blender", "ngp"])
def test_every_edited_transforms_file_loads_or_fails_in_one_line(scenes, form):
    root, name = scenes[form]
    path = root / name
    pristine = json.loads(path.read_text())
    load_dataset(str(root), "train")
    outcomes = {"loaded": 0, "refused": 0}
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i in range(CASES):
            doc = _mutate_json(json.loads(json.dumps(pristine)), random.Random(f"data/{form}/{i}"))
            try:
                path.write_text(json.dumps(doc))
            except (ValueError, OverflowError):  # a value JSON cannot write (a NaN is written; 10**4000 is too)
                continue
            signal.alarm(CASE_TIME_LIMIT_S)
            try:
                load_dataset(str(root), "train")
                outcomes["loaded"] += 1
            except VbnfError as e:
                assert "\n" not in str(e), f"case {form}/{i}: {e}"
                outcomes["refused"] += 1
            except Exception as e:  # noqa: BLE001 - the failure this test looks for
                raise AssertionError(f"case {form}/{i}: {type(e).__name__}: {e}") from e
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        path.write_text(json.dumps(pristine))
    assert outcomes["refused"] > CASES // 4 and outcomes["loaded"] > 10, outcomes
