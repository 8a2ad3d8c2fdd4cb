"""The training oracle: really trains a cell's network and reports its accuracy.

A training follows a recipe (nasflow.recipes: the embedded digits' short one by default, or
NAS-Bench-201's own) on a device (nasflow.devices, nasflow.trainer), seeded and, on the CPU,
bit-for-bit deterministic. Every result is appended to a JSON-lines cache (one fsync'ed
line per query) keyed by cell, recipe, device class and data fingerprint, so re-running or
resuming a search never trains the same cell twice.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import warnings
from typing import Callable, Optional, Union

from . import cache
from .core import Arch, Evaluation
from .data import Dataset, load_data, load_digits
from .devices import check_cuda_graph, device_class, resolve_device, resolve_precision
from .errors import NasflowError, NasflowWarning
from .recipes import DEFAULT_RECIPE, PRESETS, Recipe, get_recipe
from .trainer import Hardware, train_network

DEFAULT_EPOCHS = PRESETS[DEFAULT_RECIPE].epochs
# A step below this many multiply-accumulates (forward, whole batch) trains on one CPU thread: on 2 cores the
# digits network's steps (5e7) ran 6x slower on two threads, a 2e8 step 1.5x faster (issue 22, docs/RESULTS.md).
MULTITHREAD_MACS = 1e8
CHECKPOINT_EVERY = 300.0  # seconds between checkpoints of a long training: a kill costs at most this much
CACHE_VERSION = 2  # 2: recipes, devices and full-batch steps (results of version 1 are trained again)


class TrainingOracle:
    """``query(arch)`` trains the space's network for ``arch`` on ``data`` and evaluates it.

    ``recipe`` is a preset name (nasflow.recipes.PRESETS) or a ``Recipe``; the keyword options override it.
    ``device`` is auto, cpu, cuda or cuda:N; ``precision`` auto (bf16 on CUDA, fp32 on the CPU), fp32 or bf16;
    ``cuda_graph`` replays the whole training step from one captured CUDA graph; ``threads`` sets torch's CPU
    threads (None: one for a small step, else as torch is set: every core for a trainer alone, one in a worker). A training longer than
    ``checkpoint_every`` seconds checkpoints itself under the cache, so a killed search resumes that cell's
    training where it stopped.

    Accuracies are in percent; ``cost`` is the training's seconds (the original run's, also when the result
    comes from the cache); ``extra`` has params and flops of the trained network (one image of the data's
    size), epochs, the device class, precision, images/s and ``cached``.
    """

    best = None  # no table: the optimum is unknown
    fidelities = None  # any epoch count (nasflow.core.Oracle)
    # a cell asked at more epochs is trained again from scratch: its learning-rate schedule spans the whole
    # training, so a checkpoint of a shorter one is no prefix of the longer; ``for_schedule`` makes one that continues
    continues = False
    horizon: Optional[int] = None  # for_schedule's top rung: every fidelity is a stop on one schedule of this many epochs

    def __init__(self, space, data: Dataset, recipe: Union[str, Recipe, None] = None, *, epochs=None, width=None,
                 cells=None, batch_size=None, learning_rate=None, weight_decay=None, augment=None, seed: int = 0,
                 device: str = "auto", precision: str = "auto", cuda_graph: bool = False, threads=None,
                 cache_dir=None, checkpoint_every: Optional[float] = None, progress: bool = False,
                 warn: Optional[Callable[[str], None]] = None):
        if space.network is None:
            raise NasflowError(f"search space {space.name!r} cannot build networks, so it cannot be trained")
        base = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
        small_width, small_cells = space.small_network
        self.recipe = base.replace(epochs=epochs, width=width, cells=cells, batch_size=batch_size, lr=learning_rate,
                                   weight_decay=weight_decay, augment=augment)
        self.recipe = self.recipe.replace(width=self.recipe.width or small_width, cells=self.recipe.cells or small_cells)
        resolved = resolve_device(device)
        self.hardware = Hardware(device=resolved, precision=resolve_precision(precision, resolved),
                                 cuda_graph=check_cuda_graph(cuda_graph, resolved), threads=threads)
        self.space = space
        self.data = data
        self.seed = int(seed)
        self.progress = progress
        self.checkpoint_every = CHECKPOINT_EVERY if checkpoint_every is None else float(checkpoint_every)
        if not self.checkpoint_every >= 0:
            raise NasflowError(f"checkpoint interval must be >= 0 seconds, got {checkpoint_every!r}")
        self.warn = warn or (lambda message: warnings.warn(message, NasflowWarning, stacklevel=2))
        # the version in the key too: checkpoints of an interrupted training are filed by it
        self.config = {**self.recipe.as_dict(), "seed": self.seed, "precision": self.hardware.precision,
                       "device_class": device_class(resolved), "version": CACHE_VERSION}
        self.cache_path = cache.entry("training", space.name, CACHE_VERSION, ".jsonl", directory=cache_dir)
        self.checkpoint_dir = self.cache_path.parent / "checkpoints"
        self._cache = self._read_cache()
        self._trained: list[dict] = []  # the extras of the trainings this oracle ran

    def speed_summary(self) -> Optional[dict]:
        """The device and mean training images/s of this oracle's trainings (None before the first)."""
        return speed_summary(self._trained)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    def latency_setup(self, batch_size: int = 1):
        """What a live latency times for this oracle: the network it trains (width, cells, the data's image shape
        and classes) on a batch of ``batch_size`` images, on the device it trains on."""
        from .latency import LatencySetup

        _, height, width = self.data.image_shape
        return LatencySetup(batch_size=batch_size, image_size=height, image_width=width,
                            in_channels=self.data.in_channels, num_classes=self.data.num_classes,
                            width=self.recipe.width, cells=self.recipe.cells, device=self.hardware.device)

    def _key(self, arch: Arch) -> str:
        blob = json.dumps([self.space.name, arch.key, self.config, self.data.fingerprint], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _read_cache(self) -> dict:
        table, skipped = {}, 0
        if not cache.readable(self.cache_path):
            return table
        try:
            with open(self.cache_path, "rb") as f:
                lines = f.read().splitlines()
        except OSError as e:
            cache.report_damaged(self.cache_path, e.strerror or type(e).__name__)
            return table
        for line in lines:
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError too: garbage bytes, or a line cut short by a killed run
                rec = None
            if _is_record(rec):
                table[rec["key"]] = rec
            elif line.strip():
                skipped += 1
        if skipped:
            # those cells are simply trained again (a torn line is what a killed run leaves); the file is
            # rewritten without them so the next run does not warn again. A record another process appends
            # meanwhile may be lost with the old file: that costs one training, never a number.
            cache.report_damaged(self.cache_path, f"{skipped} of {len(lines)} lines are not training results; "
                                                  f"those cells are trained again")
            text = "".join(json.dumps(rec) + "\n" for rec in table.values())
            cache.write(self.cache_path, lambda f: f.write(text.encode("utf-8")))
        return table

    def _append(self, rec: dict) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_path, "a+b") as f:
                # a run killed mid-line left a torn record: start ours on a fresh line
                torn = False
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
                f.write((("\n" if torn else "") + json.dumps(rec) + "\n").encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # an unwritable cache costs re-training later, never the result in hand
            cache.report_unwritable(self.cache_path, e)

    def at_epochs(self, epochs: int) -> "TrainingOracle":
        """This oracle training for ``epochs`` epochs instead (same data, recipe otherwise, cache and hardware)."""
        if epochs == self.recipe.epochs:
            return self
        other = copy.copy(self)
        other.recipe = self.recipe.replace(epochs=int(epochs))
        other.config = {**self.config, **other.recipe.as_dict()}
        return other

    def for_schedule(self, max_epochs: int) -> "TrainingOracle":
        """This oracle as a multi-fidelity schedule whose top rung is ``max_epochs`` trains (issue 20): every cell
        on one learning-rate schedule of ``max_epochs`` epochs, fidelity ``f`` being the network after its first
        ``f`` of them, and a cell promoted from ``f`` to ``g`` continuing from its state at ``f`` (``continues``:
        it costs ``g - f`` epochs). At ``max_epochs`` a result is the plain training's, in the same cache."""
        other = copy.copy(self.at_epochs(max_epochs))
        other.horizon, other.continues = int(max_epochs), True
        return other

    def query(self, arch: Arch, fidelity: Optional[int] = None) -> Evaluation:
        if fidelity is None:
            return self._query(arch)
        if isinstance(fidelity, bool) or not isinstance(fidelity, int) or fidelity < 1:
            raise NasflowError(f"a training fidelity is a number of epochs >= 1, got {fidelity!r}")
        if self.horizon is None:
            return dataclasses.replace(self.at_epochs(fidelity).query(arch), fidelity=fidelity)
        if fidelity > self.horizon:
            raise NasflowError(f"fidelity {fidelity} is past the schedule's top rung of {self.horizon} epochs")
        return dataclasses.replace(self._query(arch, fidelity), fidelity=fidelity)

    def _query(self, arch: Arch, stop: Optional[int] = None) -> Evaluation:
        """The result of ``arch`` after ``stop`` epochs of the recipe's (all of them: None), from the cache or trained."""
        whole = stop is None or stop == self.recipe.epochs
        key = self._key(arch) if whole else _stop_key(self._key(arch), stop)
        rec = self._cache.get(key)
        if rec is not None and (rec.get("space"), rec.get("arch")) != (self.space.name, arch.key):
            rec = None  # a record filed under this cell's key but for another cell: never report its numbers
        if rec is None:
            rec = {"key": key, "space": self.space.name, "arch": arch.key, **self.train(arch, stop)}
            self._cache[key] = rec
            self._append(rec)
            cached = False
        else:
            cached = True
        return Evaluation(valid=rec["valid"], test=rec["test"], cost=rec["cost"],
                          extra={**rec["extra"], "cached": cached})

    def train(self, arch: Arch, stop: Optional[int] = None) -> dict:
        """Train ``arch`` (no result cache; a checkpoint of an interrupted training is continued); with ``stop``,
        only its first ``stop`` epochs, from the latest state of this training saved at or before them."""
        import torch

        from .proxies import count_macs, count_params

        data, recipe = self.data, self.recipe
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # the same initial weights on every device
            net = self.space.network(arch, num_classes=data.num_classes, in_channels=data.in_channels,
                                     width=recipe.width, cells=recipe.cells)
        extra = {"params": count_params(net), "flops": count_macs(net, data.image_shape),
                 "epochs": recipe.epochs if stop is None else stop}
        key = self._key(arch)  # the whole training's: its states at every stop are filed under it
        hardware = self.hardware
        if hardware.threads is None and extra["flops"] * recipe.batch_size < MULTITHREAD_MACS:
            hardware = dataclasses.replace(hardware, threads=1)
        checkpoint = self.checkpoint_dir / f"{key}.safetensors"
        start, base_seconds = (None, 0.0) if stop is None else self._continuation(key, checkpoint, stop)
        run = train_network(net, data, recipe, hardware, self.seed,
                            checkpoint=checkpoint, checkpoint_key=key, checkpoint_every=self.checkpoint_every,
                            start=start, stop=stop, keep=None if stop is None else self._kept_state(key, stop),
                            progress=self.progress, desc=f"training {arch.key}", warn=self.warn)
        extra.update(device=self.config["device_class"], precision=self.hardware.precision,
                     cuda_graph=run["cuda_graph"], images_per_s=run["images_per_s"],
                     resumed_from_epoch=run["resumed_from_epoch"], trained_epochs=run["trained_epochs"])
        if self.horizon is not None:
            extra["horizon"] = self.horizon
        if stop is not None:
            self._drop_kept_states(key, below=stop)
        self._trained.append(extra)
        # a continued training costs the seconds since the state it continued from, as it costs those epochs
        cost = round(run["cost"] - base_seconds, 4)
        return {"valid": run["valid"], "test": run["test"], "cost": cost, "extra": extra}

    def _kept_state(self, key: str, stop: int):
        """Where the state of training ``key`` after ``stop`` epochs is kept for a promotion to continue from."""
        return self.checkpoint_dir / f"{key}@{stop}.safetensors"

    def _kept_states(self, key: str) -> list:
        """(epochs, path) of the states of training ``key`` kept for promotions, ascending."""
        found = ((p.name.rsplit("@", 1)[1].split(".")[0], p) for p in self.checkpoint_dir.glob(f"{key}@*.safetensors"))
        return sorted((int(e), p) for e, p in found if e.isdigit())

    def _drop_kept_states(self, key: str, below: int) -> None:
        """Remove the kept states of training ``key`` before epoch ``below``: a schedule promotes a cell upwards
        only, so once a later state is kept (or the training is whole) they only take disk space."""
        for epoch, path in self._kept_states(key):
            if epoch < below:
                try:
                    path.unlink(missing_ok=True)
                except OSError:  # an unusable cache root: nothing to free
                    pass

    def _continuation(self, key: str, checkpoint, stop: int):
        """(the saved state of training ``key`` to continue from towards ``stop``, or None; the seconds of the
        kept state the continuation began from): the furthest of the kept states at or before ``stop`` and the
        checkpoint of a training interrupted on the way (which itself began from the furthest kept state)."""
        from .checkpoints import training_progress

        kept = [(e, p) for e, p in self._kept_states(key) if e <= stop]
        base_seconds = training_progress(kept[-1][1], key)[1] if kept else 0.0
        start, furthest = (kept[-1][1], kept[-1][0]) if kept else (None, 0)
        if checkpoint.exists():
            epoch, _ = training_progress(checkpoint, key)
            if furthest < epoch <= stop:
                start = checkpoint
        return start, base_seconds


def _stop_key(key: str, stop: int) -> str:
    """The result key of training ``key`` evaluated after ``stop`` of its epochs."""
    return hashlib.sha256(json.dumps([key, "stop", int(stop)]).encode()).hexdigest()


def speed_summary(extras) -> Optional[dict]:
    """Devices and mean images/s of the trainings behind ``extras`` (Evaluation.extra dicts; results from the
    cache and evaluations that trained nothing are left out); None when there are none."""
    ran = [e for e in extras if isinstance(e, dict) and e.get("images_per_s") and not e.get("cached")]
    if not ran:
        return None
    return {"device": ", ".join(sorted({str(e.get("device")) for e in ran})), "trainings": len(ran),
            "images_per_s": round(sum(e["images_per_s"] for e in ran) / len(ran), 1)}


def _is_record(rec) -> bool:
    """Whether a parsed cache line is a whole training result whose numbers can be reported."""
    def number(v, optional=False):
        return (v is None and optional) or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))

    return (isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("extra"), dict)
            and number(rec.get("valid")) and number(rec.get("test"), optional=True)
            and number(rec.get("cost"), optional=True))


def default_training_oracle(space, data_path=None, recipe: Optional[str] = None, seed: int = 0,
                            progress: bool = False, cache_dir=None, **options):
    """The oracle ``nasflow search`` uses without a benchmark: the embedded digits, or ``data_path``.

    ``options`` are TrainingOracle's keyword options (epochs, width, cells, batch_size, learning_rate, augment,
    device, precision, cuda_graph, threads). Returns ``(oracle, description)``; the description is one line
    for the CLI to print.
    """
    data = load_data(data_path, progress=progress) if data_path is not None else load_digits()
    oracle = TrainingOracle(space, data, recipe, seed=seed, progress=progress, cache_dir=cache_dir,
                            **{k: v for k, v in options.items() if v is not None})
    r, hw = oracle.recipe, oracle.hardware
    source = "no --benchmark: training on the embedded digits" if data_path is None else f"training on {data.name}"
    description = (
        f"{source} ({data.describe().split(': ', 1)[1]}); each query trains a {space.name} network "
        f"(width {r.width}, {r.cells} cell(s) per stage) for {r.epochs} epochs by recipe {r.name} "
        f"(batch {r.batch_size}, lr {r.lr:g}, augment {r.augment}) on {oracle.config['device_class']} in "
        f"{hw.precision}" + (" with a CUDA graph" if hw.cuda_graph else "")
    )
    return oracle, description
