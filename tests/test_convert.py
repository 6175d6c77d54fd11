"""Bitwidth conversion: dense -> k-means VQ, fewer bits by merging codebook rows, more bits by splitting them."""
import dataclasses
import os
import sys
from pathlib import Path

import pytest
import torch

from engine.cli import main as vbnf_main
from engine.convert import convert_bits, default_out_path, merge_codebook
from engine.errors import VbnfError
from engine.field import InferenceField, NeuralField
from engine.fileformat import load_model, load_model_bytes, model_layout, save_model, save_model_bytes
from engine.grids import LevelRows
from engine.render import render_field_rays
from fields import sphere_shell_octree


def make_field(kind: str, bits: int | None = 8, seed: int = 0) -> InferenceField:
    nf = NeuralField(sphere_shell_octree(5), 2, kind, feature_dim=8, bits=bits, seed=seed)
    with torch.no_grad():
        for p in nf.grid.grid_parameters():
            p.mul_(30.0)
    return nf.freeze({"metrics": {"psnr": 27.5}, "provenance": {"steps": 3}})


def rgb(field: InferenceField) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    origins = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=1) * 3.0
    dirs = torch.nn.functional.normalize(0.3 * torch.randn(64, 3, generator=gen) - origins, dim=1)
    return render_field_rays(field, field.max_lod, origins, dirs, torch.ones(3))["rgb"]


def feature_error(a: InferenceField, b: InferenceField) -> float:
    return sum(float(((x.table() - y.table()) ** 2).sum()) for x, y in zip(a.levels, b.levels))


@pytest.mark.parametrize("kind", ["vq", "random"])
def test_fewer_bits_keeps_the_kind_and_shrinks_the_file(kind):
    field = make_field(kind, bits=8)
    low = convert_bits(field, 4)
    assert low.grid_kind == kind and low.bits == 4 and low.n_lods == field.n_lods
    for rows, old in zip(low.levels, field.levels):
        assert rows.bits == 4 and rows.codebook.shape == (16, 8) and rows.indices.dtype == torch.int32
        assert rows.indices.shape == old.indices.shape and 0 <= int(rows.indices.min()) and int(rows.indices.max()) < 16
    assert len(save_model_bytes(low)) < len(save_model_bytes(field))
    assert torch.isfinite(rgb(low)).all()
    # weighted k-means beats keeping the first 16 rows and snapping every corner to the nearest of them
    naive_levels = []
    for rows in field.levels:
        kept = rows.codebook[:16]
        nearest = torch.cdist(rows.codebook, kept).argmin(1)[rows.indices.long()]
        naive_levels.append(LevelRows(kept, nearest.int(), None, 4))
    assert feature_error(low, field) < 0.8 * feature_error(dataclasses.replace(field, levels=naive_levels), field)


def test_merge_is_exact_when_few_rows_are_used():
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(256, 8, generator=gen)
    used = torch.randperm(256, generator=gen)[:13]
    indices = used[torch.randint(13, (5000,), generator=gen)].int()
    merged = merge_codebook(LevelRows(codebook, indices, None, 8), 4)
    assert torch.equal(merged.table(), codebook[indices.long()])


def test_merge_weights_rows_by_their_corner_counts():
    # two heavy rows and many light ones: at 1 bit the two centroids must sit on the heavy rows
    codebook = torch.cat([torch.tensor([[0.0, 0.0], [10.0, 0.0]]), torch.randn(30, 2) * 0.1 + torch.tensor([5.0, 0.0])])
    indices = torch.cat([torch.zeros(10_000), torch.ones(10_000), torch.arange(2, 32)]).int()
    merged = merge_codebook(LevelRows(codebook, indices, None, 5), 1)
    assert sorted(round(float(v), 1) for v in merged.codebook[:, 0]) == pytest.approx([0.0, 10.0], abs=0.2)


def test_more_bits_splits_rows_and_renders_the_same_image(tmp_path):
    field = make_field("vq", bits=4)
    high = convert_bits(field, 6)
    assert high.grid_kind == "vq" and high.bits == 6
    for rows, old in zip(high.levels, field.levels):
        assert rows.codebook.shape == (64, 8) and torch.equal(rows.indices, old.indices)
        copies = rows.codebook.reshape(4, 16, 8)
        assert torch.equal(copies[0], old.codebook)
        delta = (copies[1:] - old.codebook).abs()
        assert float(delta.max()) < 1e-2 * float(old.codebook.abs().max()) and float(delta.max()) > 0
    assert torch.equal(rgb(high), rgb(field))
    path = tmp_path / "high.vbnf"
    save_model(path, high)
    assert torch.equal(rgb(load_model(path)), rgb(load_model_bytes(save_model_bytes(field))))


def test_same_bits_is_a_no_op_and_bits_are_checked():
    field = make_field("vq", bits=5)
    same = convert_bits(field, 5)
    assert all(torch.equal(a.table(), b.table()) for a, b in zip(same.levels, field.levels))
    for bad in (0, 17, 3.5, True):
        with pytest.raises(VbnfError, match="--bits must be"):
            convert_bits(field, bad)


def test_dense_becomes_kmeans():
    field = make_field("dense", bits=None)
    km = convert_bits(field, 5)
    assert km.grid_kind == "kmeans" and km.bits == 5
    assert all(r.codebook.shape == (32, 8) and r.features is None for r in km.levels)
    assert feature_error(km, field) < 0.5 * sum(float((r.features ** 2).sum()) for r in field.levels)
    again = load_model_bytes(save_model_bytes(km))
    assert again.grid_kind == "kmeans" and torch.isfinite(rgb(again)).all()


def test_conversion_records_itself_and_moves_stale_metrics():
    field = make_field("vq", bits=8)
    low = convert_bits(convert_bits(field, 6, seed=3), 4)
    assert "metrics" not in low.metadata and low.metadata["provenance"] == {"steps": 3}
    first, second = low.metadata["conversions"]
    assert first == {"from_grid": "vq", "from_bits": 8, "to_grid": "vq", "to_bits": 6, "method": "merge", "seed": 3,
                     "source_metrics": {"psnr": 27.5}}
    assert second["from_bits"] == 6 and second["to_bits"] == 4 and "source_metrics" not in second
    assert field.metadata["metrics"] == {"psnr": 27.5}, "the input field is not modified"


def test_a_lego_sized_merge_keeps_every_corner_on_a_row():
    """6 LODs, ~300k corners at the finest, F=16, 2^8 -> 2^4: every corner keeps an index into the smaller codebook
    (its time is bench/convert_speed.py's, docs/RESULTS.md)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from convert_speed import lego_sized_field
    field = lego_sized_field(8)
    low = convert_bits(field, 4)
    for before, after in zip(field.levels, low.levels):
        assert after.codebook.shape == (16, 16) and after.indices.shape == before.indices.shape
        assert int(after.indices.min()) >= 0 and int(after.indices.max()) < 16
        # each old row maps to one new row: corners that shared a row still do
        pairs = torch.unique(torch.stack([before.indices.long(), after.indices.long()]), dim=1)
        assert pairs.shape[1] == torch.unique(before.indices).numel()


def test_cli_default_name_refuses_overwrite_and_prints_sizes(tmp_path, capsys):
    src = tmp_path / "lego.vbnf"
    save_model(src, make_field("vq", bits=8))
    assert default_out_path(str(src), 4) == str(tmp_path / "lego_b4.vbnf")
    assert vbnf_main(["convert", str(src), "--bits", "4"]) == 0
    out = capsys.readouterr().out
    before, after = model_layout(src).total_bytes, model_layout(tmp_path / "lego_b4.vbnf").total_bytes
    assert f"{before} bytes" in out and f"{after} bytes" in out and after < before
    assert load_model(tmp_path / "lego_b4.vbnf").bits == 4

    assert vbnf_main(["convert", str(src), "--bits", "4"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert vbnf_main(["convert", str(src), "--bits", "6", "--out", str(tmp_path / "lego_b4.vbnf"), "--force"]) == 0
    assert load_model(tmp_path / "lego_b4.vbnf").bits == 6
    assert vbnf_main(["convert", str(tmp_path / "missing.vbnf"), "--bits", "4"]) == 2
    assert "missing.vbnf" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["lego.vbnf", "lego_b4.vbnf"]


def test_finetune_after_a_merge_wins_back_quality_on_held_out_views(toy_scene, tmp_path, capsys):
    """A vq model trained on the toy scene, merged to 2 bits, then --finetune: its val PSNR goes up again; bits,
    kind, octree and file size stay those of the plain conversion."""
    from engine.data import load_dataset
    from engine.evaluate import evaluate
    run = tmp_path / "run"
    assert vbnf_main(["train", str(toy_scene), "--grid", "vq", "--bits", "6", "--max-level", "4", "--steps", "200",
                      "--batch", "1024", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    model = run / "model.vbnf"
    merged, tuned = tmp_path / "b2.vbnf", tmp_path / "b2ft.vbnf"
    assert vbnf_main(["convert", str(model), "--bits", "2", "--out", str(merged)]) == 0
    assert vbnf_main(["convert", str(model), "--bits", "2", "--out", str(tuned), "--finetune", "100",
                      "--device", "cpu"]) == 0
    assert "fine-tuned the codebooks and decoder 100 steps" in capsys.readouterr().out
    val = load_dataset(toy_scene, "val")
    a, b = load_model(merged), load_model(tuned)
    psnr = [evaluate(f, val, lods=[f.max_lod], device="cpu")[0]["psnr"] for f in (a, b)]
    assert psnr[1] > psnr[0] + 0.3, psnr
    assert (b.grid_kind, b.level_bits) == (a.grid_kind, a.level_bits) == ("vq", [2, 2, 2])
    assert all(torch.equal(x, y) for x, y in zip(a.octree.cells, b.octree.cells))
    assert abs(model_layout(tuned).total_bytes - model_layout(merged).total_bytes) < 200  # metadata only
    assert b.metadata["conversions"][-1]["finetune"]["steps"] == 100


def test_finetune_without_a_known_data_set_is_one_line(tmp_path, capsys):
    src = tmp_path / "m.vbnf"
    save_model(src, make_field("vq", bits=8))
    assert vbnf_main(["convert", str(src), "--bits", "4", "--finetune", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err
    assert vbnf_main(["convert", str(src), "--bits", "4", "--finetune", "10", "--data", str(tmp_path / "nowhere"),
                      "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err and "--data" in err
    assert sorted(os.listdir(tmp_path)) == ["m.vbnf"]  # nothing written when the fine-tune cannot start
