"""Live training: engine.train.Trainer driven in bounded chunks by a worker thread, so the UI never waits for it.

The thread loads the data set, builds a trainable field from the shown one (engine.train.trainable_from_inference),
then, while running, takes chunks of steps sized to about `CHUNK_SECONDS` each; every `snapshot_seconds` (and on
pause) it freezes an InferenceField that the app swaps into the view. The frame only reads snapshots and the
history under a lock.

Training and rendering share one process and, on a GPU, one device (two CUDA processes time-slice the GPU, each at
a fraction of its speed). The thread can give the frame its part with a duty cycle: after a chunk that kept it busy
for t seconds (measured to the end of its GPU work), it pauses t * (1 / share - 1) seconds, so training gets about
`share` of the time; `share = 1` is "train at full speed". On the CPU the default share is CPU_SHARE (the render
and the trainer divide two cores). On CUDA it is 1: the frame's kernels run on a high-priority stream (viewer/app.py
FrameStream) and go ahead of training's, so training needs no pauses (H200, 2026-12-03: the view at 31.8 fps
either way; training 0.61 of a plain loop with share 0.8 and the default stream, 0.86 with share 1, the frame's
stream and a 1 ms GIL switch interval; docs/VIEWER.md).

`live_settings` picks the settings: those of `vbnf train` on this device (batch), continuing the model's own run at
the learning rates it ended with (no restart of the decay at the high initial rates: that made the model worse).
"""
from __future__ import annotations

import contextlib
import threading
import time
import torch

from engine.data import Dataset, load_dataset
from engine.errors import VbnfError
from engine.field import InferenceField
from engine.train import DEFAULT_GRID_LR, Trainer, TrainSettings, continuation_settings, trainable_from_inference

CHUNK_SECONDS = 0.05  # a chunk of steps lasts about this long: pause, snapshots and the share react within it
CPU_SHARE = 0.8  # training's part of the time on the CPU while the view stays interactive
RATE_WINDOW_S = 3.0  # steps/s and the training share are measured over this much recent time
LIVE_STEPS = 1_000_000  # the live run has no planned end; the learning rates are constant (lr_final_ratio 1)


def default_share(device: str) -> float:
    """Training's part of the time while the view stays interactive: 1 on CUDA (the frame's stream has priority),
    CPU_SHARE on the CPU."""
    return 1.0 if torch.device(device).type == "cuda" else CPU_SHARE


def device_batch(device: str) -> int:
    """Rays per step of `vbnf train` on this device (engine/train_cli.py's defaults)."""
    from engine.train_cli import default_batch
    return default_batch(device)


def new_run_recipe(device: str, masked: bool = True):
    """`vbnf train DATA`'s recipe on `device`: the default byte budget (engine/train_cli.py DEFAULT_SIZE); masked:
    the data set has alpha masks."""
    from engine.recipe import recipe_for_budget
    from engine.train_cli import DEFAULT_SIZE
    return recipe_for_budget(DEFAULT_SIZE, torch.device(device).type, masked=masked)


def new_run_settings(device: str) -> TrainSettings:
    """`vbnf train DATA`'s settings on `device` (its --size recipe): batch, steps, learning rates."""
    return TrainSettings(steps=new_run_recipe(device).steps, batch_rays=device_batch(device),
                         grid_lr=DEFAULT_GRID_LR["vq"])


def new_run(dataset: Dataset, device: torch.device):
    """`vbnf train DATA`'s run on `device` (engine.recipe.VqBudgetRun for the default byte budget): its occupancy
    phase, then vq with the bits per level that fit the budget."""
    from engine.recipe import VqBudgetRun
    return VqBudgetRun(dataset, new_run_recipe(str(device), dataset.alphas is not None),
                       new_run_settings(str(device)), device)


def live_settings(field: InferenceField, device: str) -> TrainSettings:
    """Settings that continue `field`'s training without end (engine.train.continuation_settings) with `vbnf train`'s
    batch for `device`."""
    return continuation_settings(field, LIVE_STEPS, device_batch(device))


class DatasetCache:
    """Data sets loaded for the viewer (training, ground-truth comparison, snapping to training cameras), by path."""

    def __init__(self, on_loaded=None) -> None:
        self.on_loaded = on_loaded
        """Called from the loading thread when a load ends (the app wakes its idle loop with it)."""
        self._sets: dict[tuple[str, int], Dataset] = {}
        self._loading: set[tuple[str, int]] = set()
        self._errors: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def load(self, path: str, downscale: int = 1) -> Dataset:
        """The train split; DataError (one line) when it cannot be read."""
        key = (str(path), int(downscale))
        with self._lock:
            if key in self._sets:
                return self._sets[key]
        dataset = load_dataset(path, "train", downscale=downscale)  # slow: outside the lock
        with self._lock:
            return self._sets.setdefault(key, dataset)

    def request(self, path: str, downscale: int = 1) -> Dataset | None:
        """The data set if loaded; otherwise starts loading it in a thread and returns None (see `error`)."""
        key = (str(path), int(downscale))
        with self._lock:
            if key in self._sets:
                return self._sets[key]
            if key in self._loading or key in self._errors:
                return None
            self._loading.add(key)
        threading.Thread(target=self._load_in_thread, args=(key,), name="vbnf-dataset", daemon=True).start()
        return None

    def error(self, path: str, downscale: int = 1) -> str:
        """The one-line failure of the last load of `path` ("" when none)."""
        with self._lock:
            return self._errors.get((str(path), int(downscale)), "")

    def forget_error(self, path: str, downscale: int = 1) -> None:
        with self._lock:
            self._errors.pop((str(path), int(downscale)), None)

    def loading(self) -> bool:
        """A data set is being loaded in the background."""
        with self._lock:
            return bool(self._loading)

    def _load_in_thread(self, key: tuple[str, int]) -> None:
        try:
            self._load_key(key)
        finally:
            if self.on_loaded is not None:
                self.on_loaded()

    def _load_key(self, key: tuple[str, int]) -> None:
        try:
            dataset = load_dataset(key[0], "train", downscale=key[1])
        except VbnfError as e:
            with self._lock:
                self._errors[key] = str(e)
                self._loading.discard(key)
            return
        except Exception as e:
            with self._lock:
                self._errors[key] = f"cannot load the data set {key[0]}: {type(e).__name__}: {e}".splitlines()[0]
                self._loading.discard(key)
            return
        with self._lock:
            self._sets[key] = dataset
            self._loading.discard(key)


class TrainingSession:
    """One live training run of one field. Start/pause from the UI thread; poll snapshots each frame.

    settings: None for live_settings(field, device); device: "cpu" or "cuda[:i]"; share: training's part of the time
    (0..1, settable while running; None: default_share(device)); wake: called from the thread after each snapshot or
    failure (the app wakes its idle loop with it); new_run(dataset, device): "Train new", a run from the data set
    instead of continuing `field` (`new_run` below: `vbnf train`'s recipe, whose trainer changes between its phases);
    prepare(snapshot): called on the thread after each freeze (the app uploads the snapshot to the CUDA marcher there,
    so the frame finds it uploaded)."""

    def __init__(self, field: InferenceField | None, dataset_path: str, datasets: DatasetCache,
                 settings: TrainSettings | None = None, device: str = "cpu", downscale: int = 1,
                 snapshot_seconds: float = 1.0, share: float | None = None, wake=None, new_run=None,
                 prepare=None):
        self.dataset_path = dataset_path
        self.settings = settings if settings is not None else (
            new_run_settings(device) if new_run is not None else live_settings(field, device))
        self.device = device
        self.snapshot_seconds = snapshot_seconds
        self.share = share if share is not None else default_share(device)
        """Training's part of the time, 0..1 (1: train at full speed)."""
        self.steps_per_chunk = 1
        """Steps of the next chunk (sized to CHUNK_SECONDS from the last one)."""
        self._start_field = field
        self._new_run = new_run
        self._run = None  # the VqBudgetRun of "Train new"
        self._prepare = prepare
        self._datasets = datasets
        self._downscale = downscale
        self._wake_ui = wake
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running = False
        self._closed = False
        self._snapshot: InferenceField | None = None
        self._history: list[dict] = []
        self._rate: tuple[float, float] = (0.0, 0.0)  # (steps/s, busy fraction) over the last RATE_WINDOW_S
        self.status = "loading the data set"
        self.error = ""
        self.initial: tuple[InferenceField, bytes] | None = None
        """"Train new": the untrained model frozen and serialised by the thread, for the viewer to show."""
        self.trainer: Trainer | None = None
        self._stream = None  # torch.cuda.Stream of the training thread (CUDA only)
        self._thread = threading.Thread(target=self._loop, name="vbnf-train", daemon=True)
        self._thread.start()

    # -- control (UI thread) ---------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    @property
    def ready(self) -> bool:
        """The trainer is built (the data set is loaded)."""
        return self.trainer is not None or bool(self.error)

    def start(self) -> None:
        with self._lock:
            self._running = not self.error
            self._wake.notify_all()

    def pause(self) -> None:
        with self._lock:
            self._running = False
            self._wake.notify_all()

    def take_snapshot(self) -> InferenceField | None:
        """The newest frozen field not yet taken (None when there is none)."""
        with self._lock:
            snap, self._snapshot = self._snapshot, None
            return snap

    def history(self) -> list[dict]:
        with self._lock:
            return list(self._history)

    def rate(self) -> tuple[float, float]:
        """(steps per second, fraction of the wall time spent training) over the last few seconds."""
        with self._lock:
            return self._rate

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._running = False
            self._wake.notify_all()
        self._thread.join(timeout=60)

    # -- worker thread ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            dataset = self._datasets.load(self.dataset_path, self._downscale)
            device = torch.device(self.device)
            # no name for the trainable field here: it would outlive pruning, which replaces trainer.field
            if self._new_run is not None:
                self._run = self._new_run(dataset, device)
                self.trainer = self._run.trainer
            else:
                self.trainer = Trainer(trainable_from_inference(self._start_field), dataset, self.settings, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # built on this thread's default stream; steps run on their own
        except VbnfError as e:
            self._fail(str(e))
            return
        except Exception as e:  # anything else still ends as one line in the UI, never a dead window
            self._fail(f"cannot start training: {type(e).__name__}: {e}".splitlines()[0])
            return
        initial = None
        if self._run is not None:  # the new model is shown from its first step; the viewer needs its bytes
            from engine.fileformat import save_model_bytes
            first = self.trainer.freeze()
            initial = (first, save_model_bytes(first))  # here, not on the frame thread
        with self._lock:
            self.status = "ready: press Start"
            self.initial = initial
        self._notify()
        last_snapshot = time.perf_counter()
        window: list[tuple[float, int, float]] = []  # (start time, steps, busy seconds) of recent chunks
        unsaved = False  # steps taken since the last snapshot
        while True:
            with self._lock:
                paused = not self._running and not self._closed
            if paused and unsaved:  # paused between chunks (during the rest after one): hand over its state now
                self._hand_over_snapshot()
                unsaved = False
            with self._lock:
                while not self._running and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            start = time.perf_counter()
            n = self.steps_per_chunk
            try:
                with self._on_stream():
                    stats = self.trainer.step(n)
                    if self._run is not None and self._run.advance():  # the recipe's next phase
                        self.trainer = self._run.trainer
                self._sync()  # the chunk's GPU work is done: honest timing, and a bounded queue
            except Exception as e:
                self._fail(str(e).splitlines()[0] if isinstance(e, VbnfError) else f"training step failed: {e}")
                return
            now = time.perf_counter()
            busy = now - start
            self.steps_per_chunk = max(1, min(1000, round(n * CHUNK_SECONDS / max(busy, 1e-6))))
            snapshot = None
            with self._lock:
                paused = not self._running
            unsaved = True
            if paused or now - last_snapshot >= self.snapshot_seconds:
                snapshot = self._freeze_prepared()
                last_snapshot = now
                unsaved = False
            share = min(max(float(self.share), 0.05), 1.0)
            rest = busy * (1.0 / share - 1.0)
            window.append((start, n, busy))
            while len(window) > 1 and now - window[0][0] > RATE_WINDOW_S:
                window.pop(0)
            with self._lock:
                self._history.extend(stats)
                if snapshot is not None:
                    self._snapshot = snapshot
                last = stats[-1] if stats else None
                if last:
                    phase = f" ({self._run.phase} phase)" if self._run is not None else ""
                    self.status = (f"{'training' if self._running else 'paused'}{phase}: step {last['step']}, "
                                   f"loss {last['loss']:.5f}, PSNR {last['psnr']:.2f} dB")
                span = now + rest - window[0][0]  # includes the pauses between these chunks and after the last
                if span > 0:
                    self._rate = (sum(w[1] for w in window) / span, sum(w[2] for w in window) / span)
            if snapshot is not None:
                self._notify()
            if rest > 0:
                with self._lock:
                    self._wake.wait(timeout=rest)  # pause and close still answer at once

    def _freeze_prepared(self) -> InferenceField:
        """The trainer's field frozen now, prepared for the frame (uploaded on CUDA) and synchronised."""
        with self._on_stream():
            snapshot = self.trainer.freeze()
            if self._prepare is not None:
                try:
                    self._prepare(snapshot)
                except Exception:  # only a head start: the frame uploads it otherwise
                    pass
        self._sync()  # the frame thread reads the snapshot on its own stream
        return snapshot

    def _hand_over_snapshot(self) -> None:
        snapshot = self._freeze_prepared()
        with self._lock:
            self._snapshot = snapshot
        self._notify()

    def _on_stream(self):
        """On CUDA, the training thread's own stream: its kernels run beside the frame's renders (which use the
        frame thread's current stream) instead of queueing ahead of them."""
        if self.trainer is None or self.trainer.device.type != "cuda":
            return contextlib.nullcontext()
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.trainer.device)
        return torch.cuda.stream(self._stream)

    def _sync(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _notify(self) -> None:
        if self._wake_ui is not None:
            self._wake_ui()

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = message
            self.status = message
            self._running = False
        self._notify()
