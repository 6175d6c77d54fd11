"""The bundled default model opens, is small, and its coarse LODs really are coarser."""
import torch

from engine.bundled import bundled_model_path
from engine.cameras import image_rays, orbit_camera
from engine.fileformat import load_model, model_layout
from engine.render import render_image

DEFAULT = bundled_model_path()  # found as package data, as an installed vbnf finds it


def test_default_model_is_small_and_every_lod_renders_differently():
    layout = model_layout(DEFAULT)
    assert layout.total_bytes <= 1_000_000 and len(layout.lod_prefix_bytes) >= 4
    field = load_model(DEFAULT)
    cams = orbit_camera(field.scene_center, 4.0, 45.0, 25.0, 40.0, 40, 40)
    origins, dirs = image_rays(cams, 0)
    coarse = render_image(field, origins, dirs, 40, 40, lod=0)
    fine = render_image(field, origins, dirs, 40, 40, lod=field.max_lod)
    assert (fine < 0.9).any()  # the object is in view
    assert torch.mean((coarse - fine) ** 2) > 1e-4


def test_default_model_gets_sharper_with_every_lod():
    """The test PSNR stored by `vbnf eval --store` rises from each LOD to the next, and the full model is sharp."""
    stored = load_model(DEFAULT).metadata["metrics"]["test_per_lod"]
    psnr = [row["psnr"] for row in stored]
    assert all(b > a for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] > 25.0


def test_vbnf_info_without_a_model_describes_the_bundled_one(capsys):
    from engine.cli import main
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert str(DEFAULT) in out and f"{model_layout(DEFAULT).total_bytes} bytes" in out
