"""Live training continues a saved model without making it worse: the bundled model on its procedural scene, val
views held back, the viewer's own TrainingSession and settings (CPU)."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.data import load_dataset
from engine.evaluate import evaluate
from engine.fileformat import load_model
from viewer.training_session import DatasetCache, TrainingSession, live_settings

BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "default.vbnf"
LIVE_STEPS = 20  # the first moments of live training: where restarting at the initial learning rates hurt
TEST_BATCH = 1024  # a quarter of the CPU default keeps the test short; the old settings failed at this batch too


def val_psnr(field, val) -> float:
    return evaluate(field, val, lods=[field.max_lod], device="cpu", renderer="torch")[0]["psnr"]


def test_live_settings_continue_the_run_at_its_final_rates():
    field = load_model(BUNDLED)
    stored = field.metadata["train_settings"]
    s = live_settings(field, "cpu")
    assert s.lr == pytest.approx(stored["lr"] * stored["lr_final_ratio"])
    # a vq model's indices stay (its logits get no rate: moving them from a fresh optimiser state made the H200
    # bench's model worse); its codebooks continue at the grid's final rate
    assert s.codebook_lr == pytest.approx(stored["grid_lr"] * stored["lr_final_ratio"]) and s.grid_lr == 0.0
    assert s.lr_final_ratio == 1.0 and s.prune_at == () and s.soft_fraction == 0.0
    assert s.batch_rays == 4096  # vbnf train's CPU batch
    assert live_settings(field, "cuda").batch_rays == 16384  # vbnf train's CUDA batch


def test_live_training_does_not_make_the_bundled_model_worse(toy_scene):
    field = load_model(BUNDLED)
    val = load_dataset(toy_scene, "val")
    before = val_psnr(field, val)
    settings = replace(live_settings(field, "cpu"), batch_rays=TEST_BATCH)
    session = TrainingSession(field, str(toy_scene), DatasetCache(), settings, device="cpu", share=1.0)
    try:
        session.start()
        deadline = time.perf_counter() + 600
        while time.perf_counter() < deadline and not session.error:
            if session.trainer is not None and session.trainer.step_count >= LIVE_STEPS:
                break
            time.sleep(0.05)
        session.pause()
        assert not session.error, session.error
        snapshot = None  # pausing freezes a snapshot after the running chunk (earlier ones may be waiting too)
        while time.perf_counter() < deadline and (snapshot is None or snapshot.metadata["train_steps"] < LIVE_STEPS):
            snapshot = session.take_snapshot() or snapshot
            time.sleep(0.05)
    finally:
        session.close()
    after = val_psnr(snapshot, val)
    assert snapshot.metadata["train_steps"] >= LIVE_STEPS
    assert after >= before, f"val PSNR {before:.3f} -> {after:.3f} dB after {LIVE_STEPS} live steps"
    for old, new in zip(field.levels, snapshot.levels):  # the codebooks and decoder trained; the indices stayed
        assert torch.equal(old.indices.cpu(), new.indices.cpu())
