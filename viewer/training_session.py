"""Live training: engine.train.Trainer driven in bounded chunks by a worker thread, so the UI never waits for it.

The thread loads the data set, builds a trainable field from the shown one (engine.train.trainable_from_inference),
then, while running, takes `steps_per_chunk` steps at a time; every `snapshot_seconds` (and on pause) it freezes an
InferenceField that the app swaps into the view. The frame only reads snapshots and the history under a lock.
"""
from __future__ import annotations

import threading
import time
import torch

from engine.data import Dataset, load_dataset
from engine.errors import VbnfError
from engine.field import InferenceField
from engine.train import Trainer, TrainSettings, trainable_from_inference

LIVE_SETTINGS = TrainSettings(steps=100_000, batch_rays=1024, prune_at=())
"""Live training keeps the model's octree (no pruning) and a slow learning-rate decay."""


class DatasetCache:
    """Data sets loaded for the viewer (training, ground-truth comparison, snapping to training cameras), by path."""

    def __init__(self) -> None:
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

    def _load_in_thread(self, key: tuple[str, int]) -> None:
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
    """One live training run of one field. Start/pause from the UI thread; poll snapshots each frame."""

    def __init__(self, field: InferenceField, dataset_path: str, datasets: DatasetCache,
                 settings: TrainSettings = LIVE_SETTINGS, device: str = "cpu", downscale: int = 1,
                 steps_per_chunk: int = 1, snapshot_seconds: float = 1.0):
        self.dataset_path = dataset_path
        self.settings = settings
        self.steps_per_chunk = steps_per_chunk
        self.snapshot_seconds = snapshot_seconds
        self._start_field = field
        self._datasets = datasets
        self._device = device
        self._downscale = downscale
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running = False
        self._closed = False
        self._snapshot: InferenceField | None = None
        self._history: list[dict] = []
        self.status = "loading the data set"
        self.error = ""
        self.trainer: Trainer | None = None
        self._thread = threading.Thread(target=self._loop, name="vbnf-train", daemon=True)
        self._thread.start()

    # -- control (UI thread) ---------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

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
            # no name for the trainable field here: it would outlive pruning, which replaces trainer.field
            self.trainer = Trainer(trainable_from_inference(self._start_field), dataset, self.settings,
                                   torch.device(self._device))
        except VbnfError as e:
            self._fail(str(e))
            return
        except Exception as e:  # anything else still ends as one line in the UI, never a dead window
            self._fail(f"cannot start training: {type(e).__name__}: {e}".splitlines()[0])
            return
        with self._lock:
            self.status = "ready: press Start"
        last_snapshot = time.perf_counter()
        while True:
            with self._lock:
                while not self._running and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            try:
                stats = self.trainer.step(self.steps_per_chunk)
            except Exception as e:
                self._fail(str(e).splitlines()[0] if isinstance(e, VbnfError) else f"training step failed: {e}")
                return
            now = time.perf_counter()
            snapshot = None
            with self._lock:
                paused = not self._running
            if paused or now - last_snapshot >= self.snapshot_seconds:
                snapshot = self.trainer.freeze()
                last_snapshot = now
            with self._lock:
                self._history.extend(stats)
                if snapshot is not None:
                    self._snapshot = snapshot
                last = stats[-1] if stats else None
                if last:
                    self.status = (f"{'training' if self._running else 'paused'}: step {last['step']}, "
                                   f"loss {last['loss']:.5f}, PSNR {last['psnr']:.2f} dB")

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = message
            self.status = message
            self._running = False
