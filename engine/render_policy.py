"""The one decision of which renderer draws an image: the fused CUDA marcher (engine/gpu_render.py) or the torch
reference renderer (engine/render.py). `vbnf render`, `vbnf eval`, `vbnf compare` and the viewer all call
`choose_renderer`, which says its choice and why in one log line (logger "vbnf.render"; the `vbnf` command prints
it on stderr).

Paths:
- "cuda+interop": the CUDA marcher writes the viewer's GL texture through CUDA-GL interop (no copy);
- "cuda+upload":  the CUDA marcher writes device memory; a GL target copies it into its texture (CUDA without
                  interop, e.g. WSL or GL on another GPU), and a command-line tool reads it from there;
- "cpu":          the torch reference renderer (on the CPU in the viewer; on the chosen --device in vbnf render/eval).

Layer: engine. Imports the CUDA layer lazily; importing this module never touches a driver.
"""
from __future__ import annotations

import logging
import os
from typing import Literal, NamedTuple

import torch

from engine.errors import VbnfError

log = logging.getLogger("vbnf.render")

RenderPath = Literal["cuda+interop", "cuda+upload", "cpu"]
Prefer = Literal["auto", "cuda", "torch"]
FALLBACK_NOTE = "; the torch reference renderer runs instead"


class RenderChoice(NamedTuple):
    """The chosen path and, in one line, why."""

    path: RenderPath
    reason: str

    @property
    def uses_cuda(self) -> bool:
        """True for the CUDA marcher's paths, False for the torch renderer."""
        return self.path != "cpu"

    @property
    def renderer(self) -> str:
        """"cuda" or "torch": the renderer's name in tables and stored metrics."""
        return "cuda" if self.uses_cuda else "torch"


def choose_renderer(prefer: Prefer = "auto", device: torch.device | str | None = None,
                    gl_available: bool = False) -> RenderChoice:
    """Which renderer draws here, logged in one line.

    prefer: "auto" (the CUDA marcher when it can run, else torch), "cuda" (VbnfError, one line, when it cannot) or
    "torch"; device: where the caller's tensors live (None: no constraint); the CUDA marcher needs a CUDA device;
    gl_available: a GL context is current on this thread (the viewer), so CUDA-GL interop may apply.
    """
    choice = _decide(prefer, None if device is None else torch.device(device), gl_available)
    if prefer == "cuda" and not choice.uses_cuda:
        why = choice.reason.replace(FALLBACK_NOTE, "")
        raise VbnfError(f"the CUDA marcher cannot run: {why}; use --renderer torch (or auto)")
    log.info("render path: %s (%s)", choice.path, choice.reason)
    return choice


def cuda_failure(e: BaseException) -> VbnfError:
    """The one-line error when the CUDA marcher, chosen here, fails at run time (compile or launch)."""
    text = str(e).splitlines()[0] if str(e) else ""
    return VbnfError(f"the CUDA marcher failed ({type(e).__name__}: {text}); rerun with --renderer torch")


def _decide(prefer: Prefer, device: torch.device | None, gl_available: bool) -> RenderChoice:
    if prefer == "torch":
        return RenderChoice("cpu", "the torch renderer was requested")
    try:
        from engine.cuda import cuda_unavailable_reason
        reason = cuda_unavailable_reason()
    except Exception as e:  # a broken CUDA layer means the torch path, said in the reason
        reason = f"the CUDA layer failed to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if reason is not None:
        return RenderChoice("cpu", f"CUDA unavailable: {reason}{FALLBACK_NOTE}")
    if device is not None and device.type != "cuda":
        return RenderChoice("cpu", f"the torch renderer on device {device} (the CUDA marcher needs a CUDA device)")
    name = torch.cuda.get_device_name()
    if not gl_available:
        return RenderChoice("cuda+upload", f"CUDA on {name}; no GL context, frames go to device memory")
    from engine.gpu_render import gl_interop_unavailable_reason
    why = gl_interop_unavailable_reason()
    if why is not None or os.environ.get("VBNF_NO_INTEROP") == "1":
        why = why or "VBNF_NO_INTEROP=1"
        return RenderChoice("cuda+upload", f"CUDA on {name} without CUDA-GL interop: {why}; frames are uploaded "
                                           "with texture.write")
    return RenderChoice("cuda+interop", f"CUDA on {name} with CUDA-GL interop on the GL context's device")
