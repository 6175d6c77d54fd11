"""The engine's layers as importing shows them, each checked in a fresh interpreter: the field knows nothing of CUDA
(the trainer hands it the fused lookup), and importing the CUDA back end compiles nothing (it does not even load
NVRTC's bindings; torch itself may import cuda-python's driver bindings)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def modules_after_import(*modules: str) -> set[str]:
    """Names in sys.modules after a fresh interpreter (run from the repository root) imports `modules`."""
    code = f"import sys\nimport {', '.join(modules)}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_field_and_its_readers_import_nothing_of_engine_cuda():
    loaded = modules_after_import("engine.field", "engine.render", "engine.fileformat", "engine.octree")
    assert "engine.field" in loaded
    assert not [m for m in loaded if m == "engine.cuda" or m.startswith("engine.cuda.")]


def test_the_cuda_toolchain_imports_no_field_no_marcher_and_no_nvrtc():
    loaded = modules_after_import("engine.cuda.toolchain")
    assert not {"engine.field", "engine.render", "engine.cuda.marcher", "cuda.bindings.nvrtc"} & loaded


def test_importing_every_kernel_module_compiles_nothing():
    loaded = modules_after_import("engine.cuda.marcher", "engine.cuda.grid_features", "engine.cuda.vq_adam",
                                  "engine.gpu_render", "engine.train")
    assert "engine.cuda.toolchain" in loaded
    assert "cuda.bindings.nvrtc" not in loaded
