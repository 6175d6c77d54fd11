"""The README's screenshot: `vbnf view` on the bundled model at the default window size (1280x800), headless, once
the image is final (on a machine without CUDA: the CPU path, whose full refine time it prints).

    python bench/readme_screenshot.py [--out docs/viewer.png]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imgui_bundle  # noqa: E402,F401  (before glfw: one libglfw)
from PIL import Image  # noqa: E402

from viewer.app import App  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/viewer.png")
    args = ap.parse_args()
    app = App("assets/default.vbnf", 1280, 800, headless=True, output_dir="/tmp")
    try:
        start = time.perf_counter()
        for _ in range(5):  # the first frames start the renders
            app.frame()
        if not app.run_until_idle(300):
            print("the view did not become final within 300 s")
            return 1
        print(f"final image after {time.perf_counter() - start:.1f} s")
        Image.fromarray(app.read_screen()).save(args.out)
        print(f"wrote {args.out}")
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
