"""The field's image in the window: from the AppState to render jobs, from finished renders to the screen, and the
captures (screenshots, saved comparisons) that read the same pass back.

Per frame, `update()` works out what each side shows (viewer/compare.py), turns that into a `Want` per texture slot
and lets the scheduler submit what is missing; `draw_scene()` draws the textures with the fullscreen pass. Captures
wait until their image is final (full resolution, current view), then draw it offscreen with the same pass, so a
screenshot holds exactly the pixels the window shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np
import torch
from PIL import Image

from engine.cameras import resize_cameras, select_cameras
from engine.errors import VbnfError
from engine.metrics import psnr
from viewer.camera import nearest_camera
from viewer.compare import Side, label_split, main_side, other_side
from viewer.field_source import FieldSource, Models, lod_psnr
from viewer.gl_resources import FieldPass, FieldTexture, OffscreenTarget, SideImage
from viewer.render_paths import RenderBackend, RenderJob
from viewer.scheduler import RenderScheduler, Want
from viewer.screenshot import settings_stem, write_png
from viewer.state import AppState
from viewer.training_session import DatasetCache

SLOTS = ("a", "b", "shot")  # rendered by the scheduler; "gt" holds a ground-truth image
MIN_VIEW_WIDTH_PX = 48  # narrower than this beside the panel: the field uses the whole window, under the panel


def view_rect(state: AppState, fb: tuple[int, int], scale: float) -> tuple[int, int, int, int]:
    """The field's part of the framebuffer (x, y from the bottom-left, width, height; pixels): right of the docked
    panel, or all of it when the panel is hidden or the rest would be too narrow. scale: framebuffer pixels per
    window pixel (2 on a HiDPI screen)."""
    x0 = int(round(state.view.panel_width * scale)) if state.show_panel else 0
    if fb[0] - x0 < MIN_VIEW_WIDTH_PX:
        x0 = 0
    return x0, 0, fb[0] - x0, fb[1]


def fit_aspect(rect: tuple[int, int, int, int], aspect: float) -> tuple[int, int, int, int]:
    """The largest rect of width/height `aspect` centred in `rect` (letterbox)."""
    x, y, w, h = rect
    if w <= 0 or h <= 0 or aspect <= 0:
        return rect
    fw, fh = (w, max(1, round(w / aspect))) if w / h < aspect else (max(1, round(h * aspect)), h)
    return x + (w - fw) // 2, y + (h - fh) // 2, fw, fh


@dataclass
class CaptureRequest:
    """A screenshot or a saved comparison waiting for its image to be final."""

    kind: str
    """"screenshot" or "comparison"."""
    scale: int = 1
    """Multiple of the window's resolution (screenshots)."""


def dataset_path(state: AppState, source: FieldSource | None) -> str:
    """The data set the viewer uses: typed in the panel, else the model's metadata["dataset"]."""
    if state.training.dataset_path:
        return state.training.dataset_path
    if source is not None:
        return str(source.full.field.metadata.get("dataset", "") or "")
    return ""


def describe_model(state: AppState, source: FieldSource, side_a: Side | None) -> None:
    """Writes the panel's facts about the shown model into state.model."""
    info = state.model
    info.name = source.name
    info.n_lods = source.full.field.n_lods
    info.trained_bits = source.trained_bits
    info.file_bytes = source.file_bytes
    info.loaded_bytes = source.file_bytes if state.byte_budget is None else min(state.byte_budget, source.file_bytes)
    info.dataset = str(source.full.field.metadata.get("dataset", "") or "")
    info.live = source.live is not None
    info.ladder_psnr = lod_psnr(source.full.field.metadata) if source.is_stored(state.bits) else {}
    if side_a is not None and side_a.shown is not None:
        info.max_lod = side_a.shown.field.max_lod
        info.ladder_bytes = list(source.layout_of(side_a.shown).lod_prefix_bytes)
    whole = source.live if source.live is not None else source.prepared(state.bits, None)
    if whole is not None:  # else the size shown before, until the conversion is ready
        info.size_bytes = source.layout_of(whole).total_bytes


class FieldView:
    """Slot textures, the fullscreen pass, the render scheduler and pending captures."""

    def __init__(self, ctx: moderngl.Context, backend: RenderBackend):
        self.ctx = ctx
        self.textures = {slot: FieldTexture(ctx) for slot in (*SLOTS, "gt")}
        self.field_pass = FieldPass(ctx)
        self.scheduler = RenderScheduler(backend, self.textures)
        self.captures: list[CaptureRequest] = []
        self.side_a: Side | None = None
        self.side_b: Side | None = None
        self.wants: dict[str, Want] = {}
        self._gt: tuple[str, int] | None = None  # (data set path, camera index) held in texture "gt"
        self._values_a: tuple[tuple, np.ndarray] | None = None  # key and values of the newest slot-"a" image
        self._gt_psnr: dict[tuple, float] = {}
        self.image_rect: tuple[int, int, int, int] = (0, 0, 1, 1)  # framebuffer pixels, bottom-left origin

    # -- per frame -------------------------------------------------------------------------------------------------

    def update(self, state: AppState, models: Models, datasets: DatasetCache, rect: tuple[int, int, int, int],
               scale: float) -> None:
        """Works out both sides, submits what is missing, takes finished images in, runs due captures.

        rect: the field's part of the framebuffer (see view_rect); scale: framebuffer pixels per window pixel. The
        image fills rect (letterboxed to a training camera's aspect in the ground-truth comparison) and renders at
        the image's size in pixels when final."""
        source = models.current
        state.view.notice = ""
        self.side_a = self.side_b = None
        self.wants = {}
        self.image_rect = rect
        self._publish_rect(state, rect, scale)
        if source is None:
            state.view.label_a = state.view.label_b = ""
            return
        source.begin_frame()
        try:
            self.side_a = main_side(state, source)
        except VbnfError as e:
            state.view.notice = str(e)
        describe_model(state, source, self.side_a)
        view_key, cams_for, train_index = self._view(state, source, datasets)
        if train_index is not None:
            train_cams = datasets.request(dataset_path(state, source)).cameras
            self.image_rect = fit_aspect(rect, train_cams.width / train_cams.height)
            self._publish_rect(state, self.image_rect, scale)
        fb = (self.image_rect[2], self.image_rect[3])
        if self.side_a is not None and state.compare.enabled:
            self.side_b = self._side_b(state, source, models, datasets, train_index)
        state.view.training_camera = -1 if train_index is None else train_index
        if self.side_a is not None:
            self.wants["a"] = self._want("a", self.side_a, view_key, cams_for, state, fb)
            if any(c.kind == "screenshot" and c.scale > 1 for c in self.captures):
                scale = max(c.scale for c in self.captures if c.kind == "screenshot")
                self.wants["shot"] = self._want("shot", self.side_a, view_key, cams_for, state,
                                                (fb[0] * scale, fb[1] * scale))
        if self.side_b is not None and self.side_b.shown is not None:
            self.wants["b"] = self._want("b", self.side_b, view_key, cams_for, state, fb)
        self.scheduler.update(self.wants, state.target_fps, state.min_render_scale)
        for done in self.scheduler.collect():
            if done.job.slot == "a" and done.values is not None:
                self._values_a = (done.job.key, done.values)
        if self.scheduler.last_error:
            state.error, self.scheduler.last_error = self.scheduler.last_error, ""
        self._measure_gt_psnr()
        state.view.label_a = self.side_a.label() if self.side_a is not None else ""
        state.view.label_b = self.side_b.label() if self.side_b is not None else ""
        shown_a = self.scheduler.shown.get("a")
        state.stats.render_size = shown_a.size if shown_a is not None else (0, 0)
        state.view.legend = None
        if shown_a is not None and shown_a.job.mode in ("depth", "samples", "level"):
            state.view.legend = (shown_a.job.mode, *(float(v) for v in shown_a.job.value_range))
        state.stats.refining = any(not self.scheduler.is_final(s, w.key, w.full) for s, w in self.wants.items())
        self._run_captures(state, fb)

    @staticmethod
    def _publish_rect(state: AppState, rect: tuple[int, int, int, int], scale: float) -> None:
        """The image's rect in window pixels (top-left origin; rects are centred vertically) and its pixel size."""
        x, y, w, h = rect
        state.view.rect = (x / scale, y / scale, w / scale, h / scale)
        state.stats.view_size = (w, h)

    def _view(self, state: AppState, source: FieldSource, datasets: DatasetCache):
        """(view key, cameras for (w, h), training camera index or None): the orbit camera, or in the ground-truth
        comparison the training camera nearest to it."""
        if state.compare.enabled and state.compare.kind == "ground truth":
            path = dataset_path(state, source)
            dataset = datasets.request(path) if path else None
            if dataset is not None and dataset.cameras.c2w.shape[0] > 0:
                c2w = state.camera.c2w()
                index = nearest_camera(dataset.cameras, c2w[:3, 3], -c2w[:3, 2])
                base = select_cameras(dataset.cameras, [index])
                return ("train", path, index), (lambda w, h: resize_cameras(base, w, h)), index
        camera = state.camera
        return ("orbit", camera.key()), camera.cameras, None

    def _side_b(self, state: AppState, source: FieldSource, models: Models, datasets: DatasetCache,
                train_index: int | None) -> Side | None:
        if state.compare.kind != "ground truth":
            self._gt = None
            try:
                return other_side(state, source, models.others)
            except VbnfError as e:
                state.view.notice = str(e)
                return None
        path = dataset_path(state, source)
        if not path:
            state.view.notice = "ground truth needs the data set: type its path under Training"
            return None
        if train_index is None:
            state.view.notice = datasets.error(path) or f"loading the data set {path} ..."
            return None
        dataset = datasets.request(path)
        if self._gt != (path, train_index):
            self.textures["gt"].write(dataset.images[train_index].numpy(), "rgb", rgb8=True)
            self._gt = (path, train_index)
        key = self._key_a(state, ("train", path, train_index))
        return Side(f"ground truth #{train_index}", image=dataset.images[train_index].numpy(),
                    psnr=self._gt_psnr.get(key))

    def _key_a(self, state: AppState, view_key: tuple) -> tuple | None:
        side = self.side_a
        if side is None or side.shown is None:
            return None
        return (side.shown.version, view_key, side.lod, state.render_mode, tuple(state.background))

    def _want(self, slot: str, side: Side, view_key: tuple, cams_for, state: AppState, full: tuple[int, int]) -> Want:
        shown, lod, mode, background = side.shown, side.lod, state.render_mode, tuple(state.background)

        def make(w: int, h: int) -> RenderJob:
            return RenderJob(slot, shown.field, shown.version, cams_for(w, h), view_key, w, h, lod, mode, background)

        return Want((shown.version, view_key, lod, mode, background), full, make)

    def _measure_gt_psnr(self) -> None:
        """PSNR of side A's final render against the ground-truth image it is compared with (resized to it), once
        per rendered image. The CPU path hands over its values; a CUDA path wrote the texture itself, which is then
        read back once (a float32 image of the view's size)."""
        if self._gt is None or self.side_b is None or self.side_b.image is None or "a" not in self.wants:
            return
        want = self.wants["a"]
        if want.key[3] != "rgb" or want.key in self._gt_psnr or not self.scheduler.is_final("a", want.key, want.full):
            return
        if self._values_a is not None and self._values_a[0] == want.key:
            values = self._values_a[1]
        else:
            values = self._read_back("a")
        h, w = values.shape[:2]
        gt = Image.fromarray((np.clip(self.side_b.image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((w, h),
                                                                                                     Image.BILINEAR)
        self._gt_psnr[want.key] = psnr(torch.from_numpy(np.ascontiguousarray(values)),
                                       torch.from_numpy(np.asarray(gt, np.float32) / 255.0))
        self.side_b.psnr = self._gt_psnr[want.key]

    def _read_back(self, slot: str) -> np.ndarray:
        """The rgb values of a slot's texture: float32 [H,W,3] in [0,1], row 0 the image's top row."""
        tex = self.textures[slot].texture
        w, h = tex.size
        texels = np.frombuffer(tex.read(), np.uint8 if tex.dtype == "f1" else np.float32).reshape(h, w, 4)
        rgb = texels[..., :3]
        return rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb

    # -- drawing ---------------------------------------------------------------------------------------------------

    def _side_image(self, slot: str) -> SideImage | None:
        if slot == "b" and self._gt is not None:
            return SideImage(self.textures["gt"], "rgb", (0.0, 1.0))
        shown = self.scheduler.shown.get(slot)
        if shown is None:
            return None
        return SideImage(self.textures[slot], shown.job.mode, shown.job.value_range)

    def draw_scene(self, state: AppState, fb: tuple[int, int]) -> None:
        """Clears the window's framebuffer (size fb) and draws the field (both sides when split) into the image
        rect chosen by `update`."""
        rect = self.image_rect
        self.ctx.screen.use()
        self.ctx.viewport = (0, 0, *fb)
        self.ctx.clear(*state.background, 1.0, viewport=(0, 0, *fb))
        a = self._side_image("a") if self.side_a is not None else None
        if a is None:
            return
        b = self._side_image("b") if self.side_b is not None else None
        self.field_pass.render(a, tuple(state.background), b, state.compare.divider, rect)

    def _draw_offscreen(self, size: tuple[int, int], a: SideImage, background, b: SideImage | None = None,
                        divider: float = 0.5) -> np.ndarray:
        target = OffscreenTarget(self.ctx, *size)
        try:
            target.use()
            self.field_pass.render(a, background, b, divider, (0, 0, *size))
            return target.read()
        finally:
            target.release()
            if self.ctx.screen is not None:  # a standalone (windowless) context has no default framebuffer
                self.ctx.screen.use()

    # -- captures --------------------------------------------------------------------------------------------------

    def request_capture(self, request: CaptureRequest) -> None:
        self.captures.append(request)

    def _run_captures(self, state: AppState, fb: tuple[int, int]) -> None:
        remaining = []
        for request in self.captures:
            try:
                if not self._try_capture(request, state, fb):
                    remaining.append(request)
            except VbnfError as e:
                state.error = str(e)
        self.captures = remaining

    def _try_capture(self, request: CaptureRequest, state: AppState, fb: tuple[int, int]) -> bool:
        """Writes the capture if its image is final; returns whether it is done (written or impossible)."""
        if self.side_a is None or "a" not in self.wants:
            state.error = "nothing to capture: no field is shown" + (f" ({state.view.notice})" if state.view.notice
                                                                     else "")
            return True
        want_a = self.wants["a"]
        if request.kind == "screenshot":
            slot = "a" if request.scale == 1 else "shot"
            want = want_a if slot == "a" else self.wants["shot"]
            if not self.scheduler.is_final(slot, want.key, want.full):
                return False
            shown = self.scheduler.shown[slot]
            pixels = self._draw_offscreen(want.full, SideImage(self.textures[slot], shown.job.mode,
                                                               shown.job.value_range), tuple(state.background))
            path = write_png(pixels, state.output_dir, self.capture_settings(state, want.full))
            state.message = f"screenshot saved: {path}"
            return True
        if self.side_b is None:
            state.error = "Save comparison: turn the comparison on first (and give side B what it needs)"
            return True
        if not self.scheduler.is_final("a", want_a.key, want_a.full):
            return False
        b = self._side_image("b")
        if self._gt is None:
            want_b = self.wants.get("b")
            if want_b is None or not self.scheduler.is_final("b", want_b.key, want_b.full):
                return False
        a = self._side_image("a")
        pixels = self._draw_offscreen(want_a.full, a, tuple(state.background), b, state.compare.divider)
        pixels = label_split(pixels, self.side_a.label(), self.side_b.label(), state.compare.divider)
        settings = self.capture_settings(state, want_a.full)
        settings.update({"compare": state.compare.kind, "side_a": self.side_a.label(), "side_b": self.side_b.label()})
        stem_settings = dict(settings, mode=f"{state.render_mode}_vs_{state.compare.kind.replace(' ', '-')}")
        path = write_png(pixels, state.output_dir, settings, stem=settings_stem(stem_settings))
        state.message = f"comparison saved: {path}"
        return True

    def capture_settings(self, state: AppState, size: tuple[int, int]) -> dict:
        """The settings a capture shows (PNG text chunks and file name)."""
        side = self.side_a
        cam = state.camera
        settings = {"model": side.name, "lod": side.lod, "bits": side.bits, "mode": state.render_mode,
                    "azimuth": round(cam.azimuth_deg, 3), "elevation": round(cam.elevation_deg, 3),
                    "distance": round(cam.distance, 5), "fov": cam.fov_y_deg, "target": list(cam.target),
                    "width": size[0], "height": size[1], "background": list(state.background),
                    "byte_budget": state.byte_budget, "size_bytes": side.size_bytes,
                    "render_path": state.stats.render_path}
        if side.psnr is not None:
            settings["psnr"] = round(side.psnr, 3)
        if state.view.training_camera >= 0:
            settings["training_camera"] = state.view.training_camera
        return settings

    def release(self) -> None:
        self.scheduler.backend.close()
        self.field_pass.release()
        for tex in self.textures.values():
            tex.release()
