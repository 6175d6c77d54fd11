"""One-shot commands: what the panel's buttons, the keys, dropped files and tests call.

Settings (LOD, bitwidth, render mode, byte budget, ...) are plain AppState fields that the panel edits directly;
the commands here do the things a value cannot say: open, save, capture, start/pause training. Every user-facing
failure ends in `state.error` as one line and leaves the current model, and any existing file, as they were.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from engine.data import resolve_dataset
from engine.errors import VbnfError
from viewer.camera import camera_from_c2w, default_camera
from engine.fileformat import model_layout
from viewer.field_source import FieldSource, Models
from viewer.field_view import CaptureRequest, FieldView, dataset_path
from viewer.file_browser import FileBrowser, system_dialog_available
from viewer.screenshot import free_path
from viewer.state import AppState
from viewer.training_session import DatasetCache, TrainingSession, default_share, device_batch, new_run

DOWNLOAD_SECONDS = 4.0  # "simulate download" fills the whole file in this time


class Actions:
    """Commands over the app's parts (each passed in explicitly; none of them knows the window)."""

    def __init__(self, state: AppState, models: Models, view: FieldView, datasets: DatasetCache,
                 training_device: str = "cpu", training_device_reason: str = "", wake=None):
        self.state = state
        self.models = models
        self.view = view
        self.datasets = datasets
        self.training: TrainingSession | None = None
        self._new_run = False  # the running session trains a new model whose first field is not shown yet
        self.training_device = training_device
        self.prepare_snapshot = None
        """Called by the training thread with each snapshot (the app uploads it to the CUDA marcher there)."""
        self.wake = wake
        """Called from worker threads when they have news for the frame (the app wakes its idle loop with it)."""
        state.training.device = training_device
        state.training.device_reason = training_device_reason
        state.training.batch = device_batch(training_device)
        self._dialog = None  # a pending portable_file_dialogs.open_file / select_folder
        self._opening: ModelOpening | None = None
        """A model file being read on a worker thread (request_open)."""
        self._dialog_purpose = ""
        self.browser: FileBrowser | None = None
        """The viewer's own chooser while it is open (machines without a system file dialog)."""

    # -- model -----------------------------------------------------------------------------------------------------

    def open_model(self, path: str | os.PathLike) -> bool:
        """Opens a model file now (on the calling thread) and shows it from the default view; on failure shows why
        and keeps the current one. The app's start uses it; what the user opens goes through `request_open`."""
        path = str(path).strip()
        if not path:
            self.state.error = "Open: type a .vbnf path first (or drop a file on the window)"
            return False
        try:
            source = FieldSource.open(path)
        except Exception as e:  # noqa: BLE001 - anything unexpected is still one line, never a crash
            self.state.error = open_error(path, e)
            return False
        self._show_opened(path, source)
        return True

    def request_open(self, path: str | os.PathLike) -> None:
        """Opens a model file on a worker thread (reading and checking a large file takes seconds): the view keeps
        the current model meanwhile, with a notice, and `poll_open` shows the new one, or why it failed."""
        path = str(path).strip()
        if not path:
            self.state.error = "Open: type a .vbnf path first (or drop a file on the window)"
            return
        if self._opening is not None:
            self.state.message = f"still opening {self._opening.path}; open {path} after it"
            return
        self._opening = ModelOpening(path, self.wake)
        self.state.message = f"opening {path} ..."

    def opening(self) -> bool:
        """A model file is being read (request_open)."""
        return self._opening is not None

    def poll_open(self) -> None:
        """Called every frame: shows the model `request_open` read, once read (or its error)."""
        opening = self._opening
        if opening is None or not opening.done.is_set():
            return
        self._opening = None
        if opening.error is not None:
            self.state.message = ""
            self.state.error = opening.error
        else:
            self._show_opened(opening.path, opening.source)

    def _show_opened(self, path: str, source: FieldSource) -> None:
        """Makes `source` (just read from `path`) the model shown, from the default view."""
        self.models.make_current(source)
        self.stop_training()
        s = self.state
        s.model_path = str(path)
        field = source.full.field
        s.lod = field.max_lod
        s.bits = None
        s.byte_budget = None
        s.download_bytes_per_s = 0.0
        s.compare.lod_b = max(0, field.max_lod - 2)
        s.compare.bits_b = max(1, (source.trained_bits or 4) - 2)
        s.camera = default_camera(field.scene_center, field.scene_half_size, s.camera.fov_y_deg)
        s.training.dataset_path = resolve_dataset(field.metadata.get("dataset", ""), Path(path))
        s.save_path = str(free_path(Path(s.output_dir) / (Path(path).stem + "_edited.vbnf")))
        s.error = ""
        s.message = f"opened {path} ({source.file_bytes} bytes, {field.n_lods} LODs)"
        return True

    def browse_for_model(self) -> None:
        """Chooses a model file without waiting: the system dialog (portable-file-dialogs) where the machine has
        one, else the viewer's own ImGui chooser; `poll_dialog` opens what was chosen."""
        self.browse("model")

    def browse(self, purpose: str) -> None:
        """A chooser for `purpose`: "model" (a .vbnf file to open), "dataset" (a data set folder or transforms
        JSON, for training and ground truth) or "output" (the folder for screenshots, comparisons and saves)."""
        if self._dialog is not None or self.browser is not None:
            return
        s = self.state
        start = {"model": str(Path(s.model_path or ".").parent), "dataset": s.training.dataset_path or ".",
                 "output": s.output_dir or "."}[purpose]
        if system_dialog_available():
            try:
                from imgui_bundle import portable_file_dialogs as pfd
                if purpose == "model":
                    self._dialog = pfd.open_file("Open a vbnf model", start, ["vbnf models", "*.vbnf", "All files", "*"])
                else:
                    self._dialog = pfd.select_folder("Choose the data set folder" if purpose == "dataset"
                                                     else "Choose the output folder", start)
                self._dialog_purpose = purpose
                return
            except Exception:
                pass  # the viewer's own chooser below
        suffixes = {"model": (".vbnf",), "dataset": (".json",), "output": ()}[purpose]
        title = {"model": "Open a model", "dataset": "Choose the data set (folder or transforms JSON)",
                 "output": "Choose the output folder"}[purpose]
        self.browser = FileBrowser(purpose, title, start, suffixes)

    def poll_dialog(self) -> None:
        """Called every frame: applies the choice of the system dialog or the viewer's chooser once made."""
        chosen = None
        purpose = ""
        if self.browser is not None and not self.browser.open:
            chosen, purpose, self.browser = self.browser.result, self.browser.purpose, None
        elif self._dialog is not None and self._dialog.ready(0):
            result, self._dialog = self._dialog.result(), None
            purpose = self._dialog_purpose
            chosen = (result[0] if result else None) if isinstance(result, list) else (result or None)
        if not chosen:
            return
        if purpose == "model":
            self.state.open_path = chosen
            self.request_open(chosen)
        elif purpose == "dataset":
            self.state.training.dataset_path = str(Path(chosen).resolve())
            self.datasets.forget_error(self.state.training.dataset_path)
        elif purpose == "output":
            self.set_output_dir(chosen)

    def set_output_dir(self, folder: str) -> None:
        """Screenshots, comparisons and proposed save names go to `folder` (made if missing)."""
        s = self.state
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            s.error = f"cannot use {folder} as the output folder: {e.strerror or e}; choose another"
            return
        s.output_dir = str(Path(folder).resolve())
        if s.save_path:
            s.save_path = str(free_path(Path(s.output_dir) / Path(s.save_path).name))
        s.message = f"screenshots and saves go to {s.output_dir}"

    def drop_files(self, paths: list[str]) -> None:
        """GLFW drop callback: opens the first dropped file."""
        if paths:
            self.request_open(paths[0])

    def save_model(self, path: str | None = None, overwrite: bool = False) -> bool:
        """Saves the shown field (the live snapshot, or the file's at the chosen bitwidth) atomically.

        An existing file is never replaced unless `overwrite` (the panel asks first: state.confirm_overwrite).
        """
        s = self.state
        source = self.models.current
        path = (path if path is not None else s.save_path).strip()
        if source is None:
            s.error = "Save: no model is open"
            return False
        if not path:
            s.error = "Save: type a file name first"
            return False
        if Path(path).exists() and not overwrite:
            s.confirm_overwrite = path
            return False
        s.confirm_overwrite = ""
        shown = source.live if source.live is not None else source.converted(s.bits, None)
        metadata = {"saved_by": "vbnf view"}
        known = dataset_path(s, source)
        if known and Path(known).exists():
            metadata["dataset"] = str(Path(known).resolve())  # stored resolved: found from any folder
        if shown.field.bits != source.trained_bits:
            metadata["converted_from_bits"] = source.trained_bits
        try:
            from engine.fileformat import save_model
            if Path(path).parent.resolve() == Path(s.output_dir).resolve():
                Path(path).parent.mkdir(parents=True, exist_ok=True)  # the output folder the user chose
            n = save_model(path, shown.field, metadata)
        except VbnfError as e:
            s.error = f"{e}; the model is still open, try another name"
            return False
        except (OSError, ValueError) as e:
            s.error = f"cannot save {path}: {e}; the model is still open, try another name"
            return False
        s.error = ""
        s.message = f"saved {path} ({n} bytes)"
        s.save_path = str(free_path(path))
        return True

    # -- view ------------------------------------------------------------------------------------------------------

    def reset_camera(self) -> None:
        source = self.models.current
        if source is None:
            return
        field = source.full.field
        self.state.camera = default_camera(field.scene_center, field.scene_half_size, self.state.camera.fov_y_deg)

    def snap_to_training_camera(self, index: int) -> None:
        """Moves the orbit camera to training camera `index` (the data set must be loaded)."""
        s = self.state
        path = dataset_path(s, self.models.current)
        dataset = self.datasets.request(path) if path else None
        if dataset is None:
            s.error = self.datasets.error(path) if path else "snap: no data set; type its path under Training"
            if not s.error:
                s.message = f"loading {path}; try again in a moment"
            return
        n = dataset.cameras.c2w.shape[0]
        index = max(0, min(index, n - 1))
        cams = dataset.cameras
        fov = math.degrees(2 * math.atan(0.5 * cams.height / cams.fy))
        s.camera = camera_from_c2w(cams.c2w[index], tuple(dataset.scene_center.tolist()), fov)

    def simulate_download(self) -> None:
        """Animates the byte budget from 0 to the whole file over DOWNLOAD_SECONDS."""
        source = self.models.current
        if source is None:
            return
        self.state.byte_budget = 0
        self.state.download_bytes_per_s = source.file_bytes / DOWNLOAD_SECONDS

    def advance_download(self, seconds: float) -> None:
        """Called every frame: moves the animated byte budget on; ends at the whole file."""
        s = self.state
        source = self.models.current
        if s.download_bytes_per_s <= 0 or source is None or s.byte_budget is None:
            return
        s.byte_budget = int(s.byte_budget + s.download_bytes_per_s * seconds)
        if s.byte_budget >= source.file_bytes:
            s.byte_budget = None
            s.download_bytes_per_s = 0.0

    # -- captures --------------------------------------------------------------------------------------------------

    def screenshot(self, scale: int | None = None) -> None:
        """PNG of the field (no UI) at `scale` x the window's resolution, written once the image is final."""
        self.view.request_capture(CaptureRequest("screenshot", int(scale or self.state.screenshot_scale)))

    def save_comparison(self) -> None:
        """PNG of the split view with both sides' labels, written once both sides are final."""
        self.view.request_capture(CaptureRequest("comparison"))

    # -- live training ---------------------------------------------------------------------------------------------

    def start_training(self) -> None:
        """Starts (or resumes) live training of the shown field on the data set."""
        s = self.state
        source = self.models.current
        if source is None:
            s.error = "Training: open a model first"
            return
        if self.training is not None and not self.training.error:
            self.training.start()
            return
        path = dataset_path(s, source)
        if not path:
            s.error = "Training: type the data set's path (its folder or transforms JSON) under Training"
            return
        self.stop_training(keep_snapshot=True)
        if s.byte_budget is not None:
            s.byte_budget = None
            s.download_bytes_per_s = 0.0
        if not Path(path).exists():
            s.error = (f"Training: the data set {path} does not exist; type its folder (or transforms JSON) under "
                       "Training")
            return
        path = str(Path(path).resolve())  # stored resolved: the saved model finds it from any folder
        s.training.dataset_path = path
        start = source.live if source.live is not None else source.converted(s.bits, None)
        self.training = TrainingSession(start.field, path, self.datasets, device=self.training_device,
                                        share=self._share(), wake=self.wake, prepare=self.prepare_snapshot)
        s.training.batch = self.training.settings.batch_rays
        self.training.start()

    def _share(self) -> float:
        return 1.0 if self.state.training.full_speed else default_share(self.training_device)

    def train_new(self, path: str | None = None) -> None:
        """"Train new": a new model trained on the data set `path` (default: the typed one) with `vbnf train`'s
        trainer and defaults for this device; the view shows it from its first step. Save writes it."""
        s = self.state
        path = (path if path is not None else s.training.dataset_path).strip()
        if not path or not Path(path).exists():
            s.error = (f"Train new: the data set {path} does not exist; " if path else "Train new: ") + \
                "type or browse to a data set folder (or transforms JSON) under Training"
            return
        path = str(Path(path).resolve())
        self.stop_training(keep_snapshot=True)
        s.training.dataset_path = path
        self._new_run = True
        self.training = TrainingSession(None, path, self.datasets, device=self.training_device,
                                        share=self._share(), wake=self.wake, new_run=new_run,
                                        prepare=self.prepare_snapshot)
        s.training.batch = self.training.settings.batch_rays
        s.message = f"training a new model on {path}"
        self.training.start()

    def _show_new_run(self, field, data: bytes) -> None:
        """Makes the new run's first frozen field the current model (its file is written by Save)."""
        s = self.state
        name = Path(s.training.dataset_path).name or "model"
        source = FieldSource(Path(s.output_dir) / f"{name}_new.vbnf", data, model_layout(data), field)
        self.models.current = source
        s.model_path = ""
        s.lod, s.bits, s.byte_budget, s.download_bytes_per_s = field.max_lod, None, None, 0.0
        s.compare.lod_b = max(0, field.max_lod - 2)
        s.camera = default_camera(field.scene_center, field.scene_half_size, s.camera.fov_y_deg)
        s.save_path = str(free_path(source.path))

    def pause_training(self) -> None:
        if self.training is not None:
            self.training.pause()

    def stop_training(self, keep_snapshot: bool = False) -> None:
        """Ends the training thread; the view goes back to the file unless `keep_snapshot`."""
        self._new_run = False
        if self.training is not None:
            self.training.close()
            self.training = None
        if not keep_snapshot and self.models.current is not None:
            self.models.current.set_live(None)

    def poll_training(self) -> None:
        """Called every frame: takes the newest snapshot into the view and copies status and history for the panel."""
        t = self.state.training
        session = self.training
        if session is None:
            t.running = False
            t.status = "" if self.models.current is None or self.models.current.live is None else "stopped"
            return
        if self._new_run and session.initial is not None:
            self._new_run = False
            self._show_new_run(*session.initial)
        snapshot = session.take_snapshot()
        if snapshot is not None and self.models.current is not None:
            self.models.current.set_live(snapshot)
        session.share = self._share()
        t.running = session.running
        t.status = session.status
        t.steps_per_s, t.share = session.rate()
        history = session.history()
        if len(history) != len(t.steps):
            t.steps = [h["step"] for h in history]
            t.loss = [h["loss"] for h in history]
            t.psnr = [h["psnr"] for h in history]

    def busy(self) -> bool:
        """Something runs in the background that the frame must poll (a file dialog, a model being read, a training
        run loading or running): the loop must not sleep until an event."""
        t = self.training
        return (self._dialog is not None or self._opening is not None
                or (t is not None and (t.running or not t.ready)))
        # (the ImGui chooser needs no polling: it changes only on input, which wakes the loop)

    def close(self) -> None:
        self.stop_training(keep_snapshot=True)


def open_error(path: str, error: Exception) -> str:
    """The one line shown when opening `path` failed with `error` (the current model stays open)."""
    if isinstance(error, VbnfError):
        text = f"cannot open {path}: {error}" if path not in str(error) else str(error)
        return text.replace("\n", " ") + "; the current model stays open"
    return f"cannot open {path}: {type(error).__name__}: {error}".splitlines()[0] + "; the current model stays open"


class ModelOpening:
    """`FieldSource.open(path)` on a worker thread: `done` is set when it ended, with `source` or `error` (the
    line to show); `wake` (the app's) is called then."""

    def __init__(self, path: str, wake=None):
        self.path = path
        self.source: FieldSource | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self._wake = wake
        threading.Thread(target=self._run, name="vbnf-open", daemon=True).start()

    def _run(self) -> None:
        try:
            self.source = FieldSource.open(self.path)
        except Exception as e:  # noqa: BLE001 - shown as one line by poll_open
            self.error = open_error(self.path, e)
        self.done.set()
        if self._wake is not None:
            self._wake()
