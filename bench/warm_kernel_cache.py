"""Compile the training kernels (feature lookup, vq logits step) and the march_rays variants that tests/test_march_rays.py and bench/render.py use into the kernel disk cache,
with NVRTC alone (no GPU needed), so a GPU run spends no time compiling.

    VBNF_CACHE_DIR=.kcache python bench/warm_kernel_cache.py [--arch sm_90] [--jobs N] [--model PATH.vbnf ...]
        [--models-only]

The cache file name hashes the source and the headers it includes, the target, the NVRTC version and the options
(engine.cuda.toolchain.kernel_cache_file), so the GPU machine finds these files only if its NVRTC has the same
major.minor version; otherwise it compiles.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from engine.cuda.grid_features import SOURCE_PATH as FEATURES_SOURCE  # noqa: E402
from engine.cuda.marcher import SOURCE_PATH as MARCHER_SOURCE  # noqa: E402
from engine.cuda.marcher import GpuField, KernelOptions, MarchTuning  # noqa: E402
from engine.cuda.toolchain import FeatureWidthOptions, compile_to_cache  # noqa: E402
from engine.cuda.vq_adam import SOURCE_PATH as VQ_ADAM_SOURCE  # noqa: E402
from engine.render import RENDER_MODES  # noqa: E402


BENCH_MODE_TUNINGS = (MarchTuning(block=(8, 8)), MarchTuning(mlp_rolled=False, block=(8, 8)))
BENCH_TUNINGS = (MarchTuning(cb_shared=False), MarchTuning(path_cache=False), MarchTuning(persistent=True),
                 MarchTuning(w_shared=False))


def model_variants(models: list[str]) -> list[KernelOptions]:
    """Every mode with the default tuning, for each model file (what the viewer and `bench/render.py --quick` use)."""
    from engine.fileformat import load_model
    out = set()
    for path in models:
        gpu = GpuField.from_field(load_model(path), "cpu")
        out.update(gpu.kernel_options(mode, MarchTuning()) for mode in RENDER_MODES)
    return sorted(out, key=lambda o: (o.mode != 0, str(o)))


def variants(models: list[str]) -> list[KernelOptions]:
    """Every mode with the default tuning for each field; the tunings that the tests and bench time."""
    from render import shell_field
    from test_march_rays import KINDS, TEST_TUNINGS, make_field
    plan = [(make_field(kind, base_level=2, n_lods=5), (), ()) for kind in KINDS if kind != "vq"]
    plan += [(make_field("vq", base_level=2, n_lods=5), TEST_TUNINGS, ()), (make_field("vq", n_lods=4), (), ())]
    plan += [(shell_field("vq", 4), BENCH_TUNINGS, BENCH_MODE_TUNINGS),
             (shell_field("dense", None), BENCH_TUNINGS, BENCH_MODE_TUNINGS)]
    for model in models:
        from engine.fileformat import load_model
        plan.append((load_model(model), BENCH_TUNINGS, BENCH_MODE_TUNINGS))
    out = set()
    for field, rgb_tunings, mode_tunings in plan:
        gpu = GpuField.from_field(field, "cpu")
        for tuning in (MarchTuning(), *mode_tunings):
            out.update(gpu.kernel_options(mode, tuning) for mode in RENDER_MODES)
        out.update(gpu.kernel_options("rgb", t) for t in rgb_tunings)
    return sorted(out, key=lambda o: (o.mode != 0, str(o)))


def _compile(args) -> str:
    source, options, arch = args
    t0 = time.perf_counter()
    _, origin = compile_to_cache(source, options, arch)
    return f"{origin:10s} {time.perf_counter() - t0:6.1f} s  {source.name} {' '.join(options.defines())}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model", action="append", default=[], help="also the variants this model needs (repeatable)")
    ap.add_argument("--models-only", action="store_true",
                    help="only the training kernel and the default tuning of every mode for each --model")
    args = ap.parse_args(argv)
    marcher = model_variants(args.model) if args.models_only else variants(args.model)
    todo = [(FEATURES_SOURCE, FeatureWidthOptions()), (VQ_ADAM_SOURCE, FeatureWidthOptions()),
            *((MARCHER_SOURCE, o) for o in marcher)]
    print(f"{len(todo)} variants for {args.arch}", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        for line in pool.map(_compile, [(*t, args.arch) for t in todo]):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
