"""The field pass's first draw per pair of texture states, with and without `FieldPass.prime_variants` (software GL).

    python bench/shader_variants.py [--size 800] [--json docs/results/shader_variants.json]

A software rasteriser (Mesa llvmpipe) compiles a shader variant for each pair of texture states bound on the pass's two
units at its first draw. For each of the nine pairs (RGBA8 linear, float linear, float nearest on either side) this
times the first and the second draw into a size x size target, `ctx.finish()` included, in a fresh EGL context
without priming and in another one primed at start. Writes the records with the GL renderer, date and commit.
Mesa keeps compiled variants in a disk cache across processes, so only a machine's first launch compiles them all:
run with MESA_SHADER_CACHE_DISABLE=true to measure that launch (recorded as `mesa_shader_cache`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import git_commit  # noqa: E402

STATES = {"rgba8 linear": ("f1", "rgb"), "float linear": ("f4", "normal"), "float nearest": ("f4", "depth")}


def first_draws(size: int, prime: bool) -> tuple[list[dict], float, str]:
    """(one record per pair, priming ms, GL_RENDERER) in a new standalone EGL context."""
    import moderngl

    from viewer.gl_resources import FieldPass, FieldTexture, OffscreenTarget, SideImage
    ctx = moderngl.create_context(standalone=True, backend="egl")
    try:
        field_pass = FieldPass(ctx)
        t0 = time.perf_counter()
        if prime:
            field_pass.prime_variants()
        prime_ms = (time.perf_counter() - t0) * 1e3
        target = OffscreenTarget(ctx, size, size)
        target.use()
        sides = {}
        for name, (dtype, mode) in STATES.items():
            texture = FieldTexture(ctx, 8, 8)
            texture.resize(8, 8, dtype)
            texture.set_filter(mode)
            sides[name] = SideImage(texture, mode, (0.0, 1.0))
        records = []
        for a in STATES:
            for b in STATES:
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    field_pass.render(sides[a], (1.0, 1.0, 1.0), None if a == b else sides[b])
                    ctx.finish()
                    times.append((time.perf_counter() - t0) * 1e3)
                records.append({"side_a": a, "side_b": b, "first_ms": round(times[0], 1),
                                "second_ms": round(times[1], 1)})
        return records, prime_ms, ctx.info["GL_RENDERER"]
    finally:
        ctx.release()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=800, help="target width and height, pixels")
    ap.add_argument("--json", default=str(ROOT / "docs" / "results" / "shader_variants.json"))
    args = ap.parse_args()
    out = []
    print("| priming | side A | side B | first draw ms | second draw ms |\n|---|---|---|---|---|")
    for prime in (False, True):
        records, prime_ms, renderer = first_draws(args.size, prime)
        for r in records:
            r.update(primed=prime, prime_ms=round(prime_ms, 1) if prime else None, size=args.size,
                     renderer=renderer, mesa_shader_cache="disabled" if os.environ.get(
                         "MESA_SHADER_CACHE_DISABLE", "").lower() in ("1", "true", "yes") else "default", date=datetime.date.today().isoformat(), commit=git_commit())
            print(f"| {'at start, %.0f ms' % prime_ms if prime else 'none'} | {r['side_a']} | {r['side_b']} | "
                  f"{r['first_ms']} | {r['second_ms']} |")
        out += records
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
