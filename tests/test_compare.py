"""`vbnf compare`: a labelled contact sheet of LODs x bitwidths, written without a window, never overwriting."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.fileformat import model_layout
from fields import make_tiny_model
from viewer.compare import Side, format_bytes


def test_contact_sheet_of_lods_and_bits(tiny_model, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    size = 40
    code = main(["compare", str(tiny_model), "--lod", "0,3", "--bits", "2,4", "--camera", "30,20,4",
                 "--size", str(size), "--out", str(out)])
    assert code == 0
    assert out.exists() and str(out) in capsys.readouterr().out
    image = Image.open(out)
    settings = json.loads(image.text["vbnf:settings"])
    assert settings["lods"] == [0, 3] and settings["bits"] == [2, 4] and settings["azimuth"] == 30.0
    pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 2 * size and pixels.shape[1] > 2 * size  # 2 rows x 2 columns plus labels
    tiles = pixels[pixels.shape[0] // 2 - 20:, :].reshape(-1, 3)
    assert (tiles != 255).any(axis=1).mean() > 0.05  # the renders are there
    # Again with the same --out: a new file, the first one untouched.
    before = out.read_bytes()
    assert main(["compare", str(tiny_model), "--lod", "3", "--size", "24", "--out", str(out)]) == 0
    assert out.read_bytes() == before
    assert (tmp_path / "sheet_1.png").exists()
    assert "not overwritten" in capsys.readouterr().out


def test_labels_name_lod_bits_size_and_psnr(tiny_model):
    ladder = model_layout(tiny_model).lod_prefix_bytes
    side = Side("tiny.vbnf", None, 1, 4, ladder[1], 31.234)
    assert side.label() == f"tiny.vbnf | LOD 1 | 4 bits | {format_bytes(ladder[1])} | 31.23 dB"


def test_stored_psnr_appears_in_the_sheet_labels(tmp_path):
    metrics = {"test_per_lod": [{"lod": 0, "psnr": 20.5}, {"lod": 1, "psnr": 25.25}]}
    model = make_tiny_model(tmp_path / "m.vbnf", max_level=3, metadata={"metrics": metrics})
    from viewer.field_source import FieldSource, lod_psnr
    from viewer.compare import side_of
    source = FieldSource.open(model)
    assert lod_psnr(source.full.field.metadata) == {0: 20.5, 1: 25.25}
    assert side_of(source, source.full, 1, True).psnr == 25.25
    assert side_of(source, source.converted(2, None), 1, False).psnr is None  # other bits: unknown


@pytest.mark.parametrize("args, message", [
    (["--lod", "9"], "outside"),
    (["--lod", "a,b"], "comma-separated"),
    (["--bits", "0"], "between 1 and 16"),
    (["--camera", "1"], "azimuth,elevation"),
    (["--mode", "xray"], "--mode"),
])
def test_bad_arguments_are_one_line(tiny_model, tmp_path, capsys, args, message):
    code = main(["compare", str(tiny_model), "--size", "16", "--out", str(tmp_path / "x.png"), *args])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_a_broken_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.vbnf"
    bad.write_bytes(b"VBNF" + b"\x00" * 40)
    assert main(["compare", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "\n" not in err
