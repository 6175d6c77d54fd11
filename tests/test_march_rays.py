"""march_rays (engine/cuda/march_rays.cu) against its torch twin (engine.render via march_rays_torch).

Three layers of checks:
- host build: the same .cu file compiled as C++ by the system compiler and run on the CPU (no GPU needed), so the
  kernel's arithmetic (rays, slab test, samples, hierarchical skipping, gathers, decoder, compositing, every mode)
  is checked against the reference wherever a C++ compiler exists;
- GPU (pytest.mark.gpu; skipped with a reason unless torch and cuda-python both see a device): the NVRTC-compiled
  kernel on fresh random cameras, every grid kind, several LODs, outputs poisoned before each run;
- GL interop (needs an EGL context on the GPU as well): a texture written through interop equals the device buffer.

Tolerances (images in [0,1] unless said): rgb PSNR >= 45 dB; depth |err| <= 1e-3 world units at 99.9% of pixels;
normal |err| <= 1e-2 at 99.5% of pixels (a normal is -grad/|grad|: ill-conditioned where grad ~ 0);
samples and level equal at 99.5% of pixels (a sample on T = EARLY_STOP or on a cell face can flip).
"""
from __future__ import annotations

import ctypes
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.cuda.marcher import (GpuField, KernelOptions, MarchParams, MarchTuning, PinholeCamera, fill_params,
                                 host_reference_options, CudaOutput, ENC_FLOAT, SOURCE_PATH, mode_channels)
from engine.cuda.toolchain import MAX_LEVELS, cuda_unavailable_reason
from engine.field import NeuralField
from engine.gpu_render import march_rays_torch, make_renderer
from engine.render_policy import choose_renderer
from engine.grids import kmeans_grid_from_dense
from engine.octree import morton_encode, octree_from_finest_cells
from engine.render import RENDER_MODES
from engine.render_target import DeviceBufferTarget
from tests.host_build import assert_layout_matches, host_library, needs_cxx

KINDS = ("dense", "vq", "random", "kmeans")
PSNR_MIN = 45.0
TEST_TUNINGS = (MarchTuning(w_shared=False), MarchTuning(cb_shared=False), MarchTuning(path_cache=False),
                MarchTuning(persistent=True), MarchTuning(mlp_rolled=False, block=(8, 8)), MarchTuning(block=(8, 8)))


# ---------------------------------------------------------------------------------------------------------------
# Test fields and cameras (no training)


def shell_octree(finest: int, radius: float = 0.3, width_cells: float = 2.0, seed: int = 0):
    """Cells of the finest level within width_cells cells of a sphere of `radius` (unit cube), plus a few random
    floaters so rays meet isolated cells too."""
    r = 1 << finest
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz + 0.5) / r - 0.5).norm(dim=1)
    keep = (dist - radius).abs() < width_cells / r
    gen = torch.Generator().manual_seed(seed)
    keep |= torch.rand(xyz.shape[0], generator=gen) < 0.002
    return octree_from_finest_cells(morton_encode(xyz[keep]), finest)


def make_field(kind: str, base_level: int = 2, n_lods: int = 4, bits: int = 4, feature_dim: int = 16,
               seed: int = 0, density_bias: float = 3.0):
    """A frozen field with a visible, partly transparent shell: random features of unit scale, random decoder with
    b1[0] = density_bias (sigma ~ e^3 per world unit: a few samples make a pixel opaque)."""
    octree = shell_octree(base_level + n_lods - 1, seed=seed)
    train_kind = "dense" if kind == "kmeans" else kind
    net = NeuralField(octree, base_level, train_kind, feature_dim=feature_dim,
                      bits=None if train_kind == "dense" else bits, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.grid.features:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)
        for p in net.grid.codebooks:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)
        for p in net.grid.logits:
            p.copy_(torch.randn(p.shape, generator=gen))
        net.decoder["b1"][0] = density_bias
        net.decoder["b3"].copy_(torch.randn(3, generator=gen) * 0.5)
    field = net.freeze()
    if kind == "kmeans":
        field = replace(field, levels=kmeans_grid_from_dense(field.levels, bits, iterations=5), grid_kind="kmeans")
    return field


def random_camera(gen: torch.Generator, width: int, height: int, center=(0.0, 0.0, 0.0)) -> PinholeCamera:
    """A pinhole camera 2.6-4.5 world units from the scene centre, looking near it, random roll and focal length."""
    u = torch.randn(3, generator=gen, dtype=torch.float64)
    eye = torch.tensor(center, dtype=torch.float64) + u / u.norm() * (2.6 + 1.9 * torch.rand(1, generator=gen).item())
    target = torch.tensor(center, dtype=torch.float64) + (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * 0.4
    back = eye - target
    back = back / back.norm()
    up = torch.randn(3, generator=gen, dtype=torch.float64)
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    c2w = torch.zeros(3, 4, dtype=torch.float64)
    c2w[:, 0], c2w[:, 1], c2w[:, 2], c2w[:, 3] = right, cam_up, back, eye
    fov = math.radians(30 + 30 * torch.rand(1, generator=gen).item())
    focal = 0.5 * height / math.tan(0.5 * fov)
    jitter = (torch.rand(2, generator=gen) - 0.5) * 4
    return PinholeCamera(c2w.float(), focal, focal * (1 + 0.05 * torch.rand(1, generator=gen).item()),
                         0.5 * width + float(jitter[0]), 0.5 * height + float(jitter[1]), width, height)


def fresh_seed() -> int:
    """A camera seed that differs on every run (conftest seeds torch's global generator); printed on failure."""
    return int.from_bytes(os.urandom(4), "little")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def compare_mode(mode: str, got: torch.Tensor, ref: torch.Tensor) -> dict:
    """Error statistics of one mode and whether they pass the tolerances in the module docstring."""
    got, ref = got.float().cpu(), ref.float().cpu()
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert torch.isfinite(got).all(), f"{mode}: {int((~torch.isfinite(got)).sum())} pixels not written / not finite"
    err = (got - ref).abs()
    if err.ndim == 3:
        err = err.amax(dim=-1)
    stats = {"mode": mode, "max": float(err.max()), "mean": float(err.mean())}
    if mode == "rgb":
        stats["psnr"] = psnr(got, ref)
        stats["ok"] = stats["psnr"] >= PSNR_MIN
    elif mode == "depth":
        stats["frac_bad"] = float((err > 1e-3).float().mean())
        stats["ok"] = stats["frac_bad"] <= 1e-3
    elif mode == "normal":
        stats["frac_bad"] = float((err > 1e-2).float().mean())
        stats["ok"] = stats["frac_bad"] <= 5e-3
    else:
        stats["frac_bad"] = float((err > 0).float().mean())
        stats["ok"] = stats["frac_bad"] <= 5e-3
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Host build of the kernel source (C++ on the CPU)


def march_host_library(options: KernelOptions, tmp_dir: Path) -> ctypes.CDLL:
    """march_rays.cu compiled as C++ with `options`."""
    return host_library(SOURCE_PATH, options.defines(), tmp_dir)


def host_march(field, camera: PinholeCamera, lod: int, mode: str, background, tmp_dir: Path,
               tuning: MarchTuning = MarchTuning(rgb_min_weight=0.0)) -> torch.Tensor:
    gpu = GpuField.from_field(field, "cpu")
    lib = march_host_library(host_reference_options(gpu, mode, tuning), tmp_dir)
    c = mode_channels(mode)
    out = torch.full((camera.height, camera.width, c), float("nan"))
    pixel_xy = camera.pixel_xy() if camera.distorted else None  # alive until the call returns
    params = fill_params(gpu, camera, lod, mode, background,
                         CudaOutput(ENC_FLOAT, ptr=out.data_ptr(), pitch=camera.width * c * 4), tuning,
                         pixel_xy=pixel_xy)
    lib.march_rays_host(ctypes.byref(params))
    return out if c == 3 else out[..., 0]


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("march_rays_host")


@needs_cxx
def test_params_layout_matches_the_kernel_struct(host_dir):
    assert_layout_matches(march_host_library(KernelOptions(), host_dir).march_params_layout, MarchParams)
    # the per-level pointer arrays hold MAX_LEVELS entries; with the layout check this ties MAX_LEVELS to the kernel's
    assert dict(MarchParams._fields_)["nodes"]._length_ == MAX_LEVELS == 16


@needs_cxx
@pytest.mark.parametrize("kind", KINDS)
def test_host_build_matches_reference(kind, host_dir):
    field = make_field(kind, n_lods=3, seed=KINDS.index(kind))
    gen = torch.Generator().manual_seed(10 + KINDS.index(kind))
    failures = []
    for lod in (0, 2):
        cam = random_camera(gen, 40, 32)
        for mode in RENDER_MODES:
            ref = march_rays_torch(field, cam, lod, mode, (0.2, 0.4, 0.9))
            got = host_march(field, cam, lod, mode, (0.2, 0.4, 0.9), host_dir)
            stats = compare_mode(mode, got, ref)
            if not stats["ok"]:
                failures.append((lod, stats))
    assert not failures, failures


FOX_DISTORTION = (0.0578421, -0.0805099, -0.000980296, 0.00015575)  # instant-ngp's fox: OpenCV k1, k2, p1, p2


def distorted(camera: PinholeCamera, scale: float = 3.0) -> PinholeCamera:
    """The camera with a lens `scale` times as distorting as fox's (strong enough to move every ray visibly)."""
    return replace(camera, distortion=tuple(scale * v for v in FOX_DISTORTION))


@needs_cxx
def test_host_build_renders_cameras_with_lens_distortion(host_dir):
    """A distorted camera's rays come from the undistorted pixel table: the same image as the torch reference (which
    undistorts like training does, engine/cameras.rays_from_pixels), and not the pinhole image."""
    field = make_field("vq", n_lods=3, seed=60)
    cam = distorted(random_camera(torch.Generator().manual_seed(61), 48, 36))
    for mode in ("rgb", "depth"):
        ref = march_rays_torch(field, cam, 2, mode, (0.2, 0.4, 0.9))
        got = host_march(field, cam, 2, mode, (0.2, 0.4, 0.9), host_dir)
        stats = compare_mode(mode, got, ref)
        assert stats["ok"], stats
    pinhole = march_rays_torch(field, replace(cam, distortion=(0.0,) * 4), 2, "rgb", (0.2, 0.4, 0.9))
    assert psnr(host_march(field, cam, 2, "rgb", (0.2, 0.4, 0.9), host_dir), pinhole) < PSNR_MIN


def test_camera_rays_follow_training_rays_through_a_distorted_lens():
    """PinholeCamera.rays (the renderers' rays) equal engine.cameras.rays_from_pixels (training's) for a lens."""
    from engine.cameras import make_cameras, rays_from_pixels
    pin = random_camera(torch.Generator().manual_seed(62), 20, 12)
    c2w = torch.cat([pin.c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]])])
    cams = make_cameras(c2w[None], pin.fx, pin.fy, pin.cx, pin.cy, pin.width, pin.height,
                        torch.tensor(FOX_DISTORTION))
    cam = PinholeCamera.of(cams)
    assert cam.distorted
    py, px = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(20) + 0.5, indexing="ij")
    origins, dirs = rays_from_pixels(cams, torch.zeros(240, dtype=torch.long), px.reshape(-1), py.reshape(-1))
    got_o, got_d = cam.rays()
    torch.testing.assert_close(got_o, origins)
    torch.testing.assert_close(got_d, dirs, atol=1e-6, rtol=0)


@needs_cxx
def test_host_build_variants_agree(host_dir):
    """Path caching on/off, fully unrolled MLP loops and a 2^10-row codebook (16-bit codes) give the reference image
    too."""
    field = make_field("kmeans", n_lods=3, bits=10, seed=3)
    cam = random_camera(torch.Generator().manual_seed(5), 40, 32)
    ref = march_rays_torch(field, cam, 2, "rgb", (1.0, 1.0, 1.0))
    for tuning in (MarchTuning(path_cache=True, rgb_min_weight=0.0), MarchTuning(path_cache=False, rgb_min_weight=0.0),
                   MarchTuning(mlp_rolled=False, rgb_min_weight=0.0)):
        got = host_march(field, cam, 2, "rgb", (1.0, 1.0, 1.0), host_dir, tuning)
        assert psnr(got, ref) >= PSNR_MIN, tuning
    for mode in ("normal", "depth"):
        a = host_march(field, cam, 2, mode, (1.0, 1.0, 1.0), host_dir, MarchTuning(mlp_rolled=False))
        b = march_rays_torch(field, cam, 2, mode)
        assert compare_mode(mode, a, b)["ok"], mode


@needs_cxx
def test_host_build_skips_empty_space_but_keeps_the_sample_set(host_dir):
    """Counting samples through an almost empty octree: skipping must land on exactly the reference's samples."""
    field = make_field("dense", n_lods=3, seed=7, density_bias=-2.0)  # nearly transparent: every sample counts
    gen = torch.Generator().manual_seed(6)
    for _ in range(3):
        cam = random_camera(gen, 40, 32)
        ref = march_rays_torch(field, cam, 2, "samples")
        got = host_march(field, cam, 2, "samples", (1.0, 1.0, 1.0), host_dir)
        assert float((got != ref).float().mean()) <= 5e-3


# ---------------------------------------------------------------------------------------------------------------
# Paths and fallbacks (any machine)


def test_without_cuda_the_cpu_path_is_chosen_and_renders():
    choice = choose_renderer(gl_available=False)
    assert choice.path in ("cpu", "cuda+upload") and "\n" not in choice.reason
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here: the CPU fallback is not the chosen path")
    assert choice.path == "cpu"
    renderer = make_renderer(gl_available=True)
    assert renderer.path == "cpu"
    field = make_field("vq", n_lods=2)
    cam = random_camera(torch.Generator().manual_seed(0), 24, 16)
    target = DeviceBufferTarget(8, 8)
    renderer.render(field, cam, 1, "rgb", (1.0, 1.0, 1.0), target)
    assert target.image().shape == (16, 24, 3)
    assert torch.equal(target.image(), march_rays_torch(field, cam, 1, "rgb", (1.0, 1.0, 1.0)))


def test_cuda_unavailable_is_one_line_and_launch_raises_it():
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("CUDA is available here")
    assert reason and "\n" not in reason
    from engine.cuda import CudaUnavailable
    from engine.gpu_render import march_rays
    with pytest.raises(CudaUnavailable) as e:
        march_rays(make_field("dense", n_lods=1), random_camera(torch.Generator(), 8, 8), 0)
    assert "\n" not in str(e.value)


def test_device_buffer_resize_is_a_noop_when_unchanged():
    target = DeviceBufferTarget(8, 6)
    target.write_image(torch.zeros(6, 8, 3), "rgb")
    image = target.image()
    target.resize(8, 6)
    assert target.image() is image
    target.resize(9, 6)
    with pytest.raises(RuntimeError):
        target.image()


def test_gl_target_falls_back_from_external_to_image_to_upload_and_says_so(tmp_path):
    """Without CUDA every interop setup fails: "external" gives way to "image", then to the upload path, each once,
    and describe() names what runs and why (the viewer's stats line)."""
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here: interop would not fail")
    from engine.render_target import GLTextureTarget, egl_context
    ctx, why = egl_context()
    if ctx is None:
        pytest.skip(why)
    target = GLTextureTarget(ctx, ctx.texture((8, 6), 4, dtype="f1"))
    assert target.interop == "external" and target.describe() == "no CUDA frame yet"
    out = target.begin_cuda("rgb", torch.device("cpu"), 0)  # the upload path's buffer, here on the CPU
    assert out.ptr and target.interop == "image"
    assert target.external_error and target.interop_error
    assert target.describe().startswith("frames uploaded (interop failed: ")
    target.release()
    ctx.release()


# ---------------------------------------------------------------------------------------------------------------
# GPU


def _gpu_ready() -> bool:
    return torch.cuda.is_available() and cuda_unavailable_reason() is None


gpu = [pytest.mark.gpu, pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")]


@pytest.fixture(scope="module")
def marcher():
    from engine.cuda.marcher import CudaMarcher
    return CudaMarcher()


def gpu_march(marcher, field, cam, lod, mode, background, tuning=None) -> torch.Tensor:
    """The kernel into a NaN-poisoned buffer, synchronised (launch errors surface here)."""
    target = DeviceBufferTarget(cam.width, cam.height)
    target.poison_(mode, marcher.device)
    stream = marcher.stream()
    out = target.begin_cuda(mode, marcher.device, stream)
    marcher.march(field, cam, lod, mode, background, out, tuning=tuning)
    torch.cuda.synchronize()
    return target.image().clone()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_kernel_matches_reference_rgb(kind, marcher, record_property):
    field = make_field(kind, base_level=2, n_lods=5, seed=20 + KINDS.index(kind))
    field_gpu = field.to("cuda")
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    results = []
    for lod in range(field.max_lod + 1):
        cam = random_camera(gen, 160, 120)
        bg = tuple(float(v) for v in torch.rand(3, generator=gen))
        ref = march_rays_torch(field_gpu, cam, lod, "rgb", bg)
        got = gpu_march(marcher, field, cam, lod, "rgb", bg)
        results.append((lod, compare_mode("rgb", got, ref)))
    print(kind, [(lod, round(s["psnr"], 2)) for lod, s in results])
    record_property("psnr", {lod: s["psnr"] for lod, s in results})
    assert all(s["ok"] for _, s in results), (seed, results)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_kernel_matches_reference_modes(kind, marcher):
    field = make_field(kind, base_level=2, n_lods=5, seed=30 + KINDS.index(kind))
    field_gpu = field.to("cuda")
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    results = []
    for lod in (1, field.max_lod):
        cam = random_camera(gen, 128, 96)
        for mode in ("depth", "normal", "samples", "level"):
            ref = march_rays_torch(field_gpu, cam, lod, mode, (1.0, 1.0, 1.0))
            got = gpu_march(marcher, field, cam, lod, mode, (1.0, 1.0, 1.0))
            results.append((lod, compare_mode(mode, got, ref)))
    print(kind, [(lod, s["mode"], round(s.get("frac_bad", 0), 5), round(s["max"], 5)) for lod, s in results])
    assert all(s["ok"] for _, s in results), (seed, results)


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_kernel_tunings_agree(marcher):
    """Decoder in constant memory, codebooks in global memory, no path cache, persistent threads, fully unrolled
    MLP, 8x8 blocks: the same image as the defaults."""
    field = make_field("vq", n_lods=5, seed=40)
    cam = random_camera(torch.Generator().manual_seed(41), 128, 96)
    base = gpu_march(marcher, field, cam, 4, "rgb", (1.0, 1.0, 1.0), MarchTuning())
    for tuning in TEST_TUNINGS:
        got = gpu_march(marcher, field, cam, 4, "rgb", (1.0, 1.0, 1.0), tuning)
        assert psnr(got, base) >= 60, tuning


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_upload_cache_reuses_and_refreshes(marcher):
    field = make_field("dense", n_lods=2, seed=50)
    a = marcher.upload(field)
    assert marcher.upload(field) is a
    field.decoder["b1"].add_(1.0)  # in place: the version counter changes
    assert marcher.upload(field) is not a


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_public_functions_agree(marcher):
    """march_rays, render_camera_cuda and Renderer.render into a DeviceBufferTarget give the same image."""
    from engine.gpu_render import RenderChoice, Renderer, march_rays, render_camera_cuda
    field = make_field("vq", n_lods=5, seed=42)
    cam = random_camera(torch.Generator().manual_seed(43), 96, 64)
    a = march_rays(field, cam, 4, "rgb", (0.5, 0.5, 0.5))
    b = render_camera_cuda(field, cam.c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, 4, "rgb",
                           (0.5, 0.5, 0.5))
    c = Renderer(RenderChoice("cuda+upload", "test")).render(field, cam, 4, "rgb", (0.5, 0.5, 0.5)).image()
    assert a.shape == (64, 96, 3) and torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason=f"CUDA unavailable: {cuda_unavailable_reason()}")
def test_kernel_renders_cameras_with_lens_distortion(marcher):
    """Evaluation on a data set with a distorted lens (fox) runs on the marcher: the same image as the reference."""
    from engine.gpu_render import render_camera_cuda
    field = make_field("vq", n_lods=4, seed=63)
    cam = distorted(random_camera(torch.Generator().manual_seed(64), 160, 120))
    ref = march_rays_torch(field.to("cuda"), cam, 3, "rgb", (1.0, 1.0, 1.0))
    got = gpu_march(marcher, field, cam, 3, "rgb", (1.0, 1.0, 1.0))
    assert compare_mode("rgb", got, ref)["ok"]
    again = render_camera_cuda(field, cam.c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, 3, "rgb",
                               (1.0, 1.0, 1.0), cam.distortion)
    assert torch.equal(again, got)


# ---------------------------------------------------------------------------------------------------------------
# GL interop (EGL context on the GPU)


@pytest.fixture(scope="module")
def egl():
    if not _gpu_ready():
        pytest.skip(f"CUDA unavailable: {cuda_unavailable_reason()}")
    from engine.render_target import egl_context
    ctx, why = egl_context()
    if ctx is None:
        pytest.skip(why)
    yield ctx
    ctx.release()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["f1", "f4"])
@pytest.mark.parametrize("mode", ["rgb", "depth"])
def test_interop_texture_matches_device_buffer(egl, dtype, mode):
    from engine.gpu_render import RenderChoice, Renderer, gl_interop_unavailable_reason
    from engine.render_target import ENC_RGBA8, ENC_RGBA32F, GLTextureTarget, encode_rgba
    why = gl_interop_unavailable_reason()
    if why is not None:
        pytest.skip(why)
    field = make_field("vq", n_lods=4, seed=60)
    cam = random_camera(torch.Generator().manual_seed(61), 200, 150)
    interop = Renderer(RenderChoice("cuda+interop", "test"))
    upload = Renderer(RenderChoice("cuda+upload", "test"))
    buffer = interop.render(field, cam, 3, mode, (0.1, 0.2, 0.3), DeviceBufferTarget(1, 1))
    torch.cuda.synchronize()
    enc = ENC_RGBA8 if dtype == "f1" else ENC_RGBA32F
    import numpy as np
    np_dtype = np.uint8 if dtype == "f1" else np.float32
    for renderer, kind in ((interop, "image"), (interop, "buffer"), (interop, "external"), (upload, "image")):
        tex = egl.texture((cam.width, cam.height), 4, dtype=dtype)
        tex.write(np.full((cam.height, cam.width, 4), 255, dtype=np.uint8).tobytes() if dtype == "f1"
                  else np.full((cam.height, cam.width, 4), np.nan, dtype=np.float32).tobytes())  # poison
        target = GLTextureTarget(egl, tex, display_scale=0.25, interop=kind)
        for _ in range(2):  # second frame: registration reused
            renderer.render(field, cam, 3, mode, (0.1, 0.2, 0.3), target)
        torch.cuda.synchronize()
        assert target.interop_active() == (renderer is interop), target.interop_error
        assert target.interop == kind  # no silent fallback from "external" to "image" on a GPU with the extensions
        got = np.frombuffer(target.texture.read(), dtype=np_dtype).reshape(cam.height, cam.width, 4)
        want = encode_rgba(buffer.image(), mode, enc, 0.25, False)
        if dtype == "f1":
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        else:
            assert np.isfinite(got).all() and np.abs(got - want).max() <= 1e-5
        target.resize(cam.width, cam.height)  # no-op
        target.release()
