"""`vbnf warmup`: compile the CUDA kernels the viewer and live training use, ahead, into the kernel disk cache.

NVRTC needs about 20 s per march_rays variant (docs/CUDA.md); a variant is fixed by the feature width, base level,
LOD count, codebook rows and render mode. This compiles, in parallel processes and with NVRTC alone (no GPU work):
- the training kernels (fused feature lookup, vq logits step) for F = 16;
- every render mode of the bundled model and of each MODEL given, at its stored bitwidth and at 4 bits;
- every render mode of a `vbnf train` model with the defaults (F 16, base level 2, 7 LODs on CUDA, 5 on the CPU)
  at 4, 6 and 8 bits.
The viewer starts it in the background on its first launch with CUDA (`start_in_background`); the marker file
`warmup-<hash>.done` in the cache says it ran for these sources and this NVRTC.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from engine.errors import VbnfError

BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "default.vbnf"
TRAIN_DEFAULT_LODS = (7, 5)  # vbnf train: --max-level 8 (CUDA) or 6 (CPU), --base-level 2
TRAIN_DEFAULT_BITS = (4, 6, 8)


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="*", help="also the variants these .vbnf models need")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel NVRTC processes")
    parser.add_argument("--arch", default=None, help="target, e.g. sm_90 (default: this machine's GPU)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def _description_options(feat: int, base_level: int, n_lods: int, cb_rows: int) -> list:
    """The default-tuning variants of every mode for a model described by its sizes (GpuField.kernel_options)."""
    from engine.cuda.marcher import GpuField, MarchTuning
    from engine.render import RENDER_MODES
    codes = 0 if cb_rows == 0 else 8 if cb_rows <= 256 else 16
    gpu = GpuField("cpu", feat, base_level, n_lods, codes, cb_rows, [], [], [], None, (0.0, 0.0, 0.0), 1.0, 0.0,
                   True, 0)
    return [gpu.kernel_options(mode, MarchTuning()) for mode in RENDER_MODES]


def variants(models: list[str]) -> list[tuple[Path, object]]:
    """(source file, options) of everything warmup compiles."""
    from engine.cuda.grid_features import SOURCE_PATH as FEATURES
    from engine.cuda.marcher import SOURCE_PATH as MARCHER
    from engine.cuda.toolchain import FeatureWidthOptions
    from engine.cuda.vq_adam import SOURCE_PATH as VQ_ADAM
    from engine.fileformat import model_layout
    options = set()
    for lods in TRAIN_DEFAULT_LODS:
        for bits in TRAIN_DEFAULT_BITS:
            options.update(_description_options(16, 2, lods, 1 << bits))
    for path in [str(BUNDLED), *models]:
        try:
            layout = model_layout(path)
        except VbnfError as e:
            raise VbnfError(f"warmup: {e}") from None
        stored = max((b for b in layout.bits if b), default=None)
        for rows in ({0} if stored is None else {1 << stored, 1 << 4}):  # as stored, and switched to 4 bits
            options.update(_description_options(layout.feature_dim, layout.base_level, layout.n_lods, rows))
    todo = [(FEATURES, FeatureWidthOptions()), (VQ_ADAM, FeatureWidthOptions())]
    return todo + [(MARCHER, o) for o in sorted(options, key=lambda o: (o.mode != 0, str(o)))]


def _compile(job) -> str:
    from engine.cuda.toolchain import compile_to_cache
    source, options, arch, cubin = job
    t0 = time.perf_counter()
    _, origin = compile_to_cache(source, options, arch, cubin)
    return f"{origin:10s} {time.perf_counter() - t0:6.1f} s  {source.name} {' '.join(options.defines())}"


def target(arch: str | None) -> tuple[str, bool]:
    """(NVRTC --gpu-architecture, cubin?) for `arch` or this machine's GPU."""
    if arch:
        return arch, arch.startswith("sm_")
    import torch
    from engine.cuda.toolchain import cuda_unavailable_reason, nvrtc_target
    why = cuda_unavailable_reason()
    if why:
        raise VbnfError(f"warmup: {why}; pass --arch (e.g. sm_90) to compile for another machine's GPU")
    return nvrtc_target(torch.cuda.get_device_capability(torch.cuda.current_device()))


def marker_path(arch: str) -> Path | None:
    """The file that says warmup ran for this target, these kernel sources and this NVRTC (None: no disk cache)."""
    from engine.cuda.toolchain import kernel_cache_dir
    cache = kernel_cache_dir()
    if cache is None:
        return None
    from engine.cuda import grid_features, marcher, vq_adam
    h = hashlib.sha256(arch.encode())
    for src in (marcher.SOURCE_PATH, grid_features.SOURCE_PATH, vq_adam.SOURCE_PATH,
                Path(marcher.SOURCE_PATH).with_name("common.cuh")):
        h.update(Path(src).read_bytes())
    try:
        from cuda.bindings import nvrtc
        h.update(str(nvrtc.nvrtcVersion()).encode())
    except Exception:
        pass
    return cache / f"warmup-{h.hexdigest()[:16]}.done"


def run(args) -> int:
    arch, cubin = target(args.arch)
    todo = variants(args.models)
    if not args.quiet:
        print(f"{len(todo)} kernel variants for {arch}", flush=True)
    t0 = time.perf_counter()
    compiled = 0
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for line in pool.map(_compile, [(src, o, arch, cubin) for src, o in todo]):
            compiled += line.startswith("compiled")
            if not args.quiet:
                print(line, flush=True)
    marker = marker_path(arch)
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{len(todo)} variants\n")
    print(f"warmup: {len(todo)} variants ready ({compiled} compiled now) in {time.perf_counter() - t0:.0f} s")
    return 0


def start_in_background() -> subprocess.Popen | None:
    """On a machine with CUDA whose kernel cache has no warmup marker yet: `vbnf warmup --quiet` in a low-priority
    process of its own (it holds no lock the viewer waits for; a variant the view needs first is compiled by the
    viewer's own worker meanwhile). Returns the process, or None when there is nothing to do."""
    try:
        arch, _ = target(None)
        marker = marker_path(arch)
    except Exception:
        return None
    if marker is None or marker.exists():
        return None
    nice = ["nice", "-n", "10"] if os.name == "posix" else []
    try:
        return subprocess.Popen([*nice, sys.executable, "-m", "engine.cli", "warmup", "--quiet",
                                 "--jobs", str(max(1, (os.cpu_count() or 2) // 2))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=str(Path(__file__).resolve().parent.parent))
    except OSError:
        return None
