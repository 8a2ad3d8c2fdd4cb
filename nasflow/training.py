"""The training oracle: really trains a cell's network and reports its accuracy.

Training follows NAS-Bench-201's recipe scaled down: SGD with Nesterov momentum 0.9, weight
decay 5e-4, learning rate 0.1 annealed by a cosine schedule to zero, cross-entropy, seeded
and deterministic on CPU. Every result is appended to a JSON-lines cache (one fsync'ed
line per query) keyed by cell, training configuration and data fingerprint, so re-running
or resuming a search never trains the same cell twice.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .core import Arch, Evaluation
from .data import Dataset, load_digits, load_npz
from .errors import NasflowError

# small networks that train in seconds on the 8x8 digits; (width, cells) per space
SMALL_NETWORK = {"nb201": (8, 1), "nb101": (16, 1)}
DEFAULT_EPOCHS = 5  # digits: 96-99% test after 5 epochs; 1.5 CPU-s a query (8 epochs: 2.5 s, no better)


class TrainingOracle:
    """``query(arch)`` trains the space's network for ``arch`` on ``data`` and evaluates it.

    Accuracies are in percent; ``cost`` is the wall-clock training time in seconds (the
    original run's, also when the result comes from the cache); ``extra`` has params and
    flops of the trained network (one image of the data's size), epochs and ``cached``.
    """

    def __init__(self, space, data: Dataset, epochs: int = DEFAULT_EPOCHS, width: int = 8, cells: int = 1,
                 seed: int = 0, cache_dir=None, progress: bool = False, batch_size: int = 64,
                 learning_rate: float = 0.1, weight_decay: float = 5e-4):
        for label, value in (("epochs", epochs), ("width", width), ("cells", cells), ("batch size", batch_size)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise NasflowError(f"{label} must be a positive integer, got {value!r}")
        if not hasattr(space, "network"):
            raise NasflowError(f"search space {space.name!r} cannot build networks, so it cannot be trained")
        self.space = space
        self.data = data
        self.seed = int(seed)
        self.progress = progress
        self.config = {
            "epochs": int(epochs), "width": int(width), "cells": int(cells), "seed": int(seed),
            "batch_size": int(batch_size), "lr": float(learning_rate), "weight_decay": float(weight_decay),
            "optimizer": "sgd-nesterov-cosine", "version": 1,
        }
        from .proxies import cache_dir as default_cache

        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache() / "training"
        self.cache_path = root / f"{space.name}.jsonl"
        self._cache = self._read_cache()
        self.description = ""

    @property
    def epochs(self) -> int:
        return self.config["epochs"]

    def _key(self, arch: Arch) -> str:
        blob = json.dumps([self.space.name, arch.key, self.config, self.data.fingerprint], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _read_cache(self) -> dict:
        table = {}
        try:
            with open(self.cache_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        table[rec["key"]] = rec
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a killed run: that cell is simply trained again
        except OSError:
            pass
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
        except OSError:
            pass  # an unwritable cache costs re-training later, never the result in hand

    def query(self, arch: Arch) -> Evaluation:
        key = self._key(arch)
        rec = self._cache.get(key)
        if rec is None:
            rec = {"key": key, "space": self.space.name, "arch": arch.key, **self.train(arch)}
            self._cache[key] = rec
            self._append(rec)
            cached = False
        else:
            cached = True
        return Evaluation(valid=rec["valid"], test=rec["test"], cost=rec["cost"],
                          extra={**rec["extra"], "cached": cached})

    def train(self, arch: Arch) -> dict:
        """Train ``arch`` from scratch (no cache) and return valid/test/cost/extra."""
        import torch
        from tqdm.auto import tqdm

        from .proxies import count_macs, count_params, one_thread

        cfg, data = self.config, self.data
        started = time.perf_counter()
        with one_thread():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = self.space.network(arch, num_classes=data.num_classes, in_channels=data.in_channels,
                                         width=cfg["width"], cells=cfg["cells"])
                gen = torch.Generator().manual_seed(self.seed)
                x = torch.from_numpy(data.x_train)
                y = torch.from_numpy(data.y_train)
                n = len(y)
                steps_per_epoch = (n + cfg["batch_size"] - 1) // cfg["batch_size"]
                opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
                                      weight_decay=cfg["weight_decay"])
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"] * steps_per_epoch)
                loss_fn = torch.nn.CrossEntropyLoss()
                bar = tqdm(range(cfg["epochs"]), desc=f"training {arch.key}"[:60], unit="epoch",
                           leave=False, disable=not self.progress)
                net.train()
                for _ in bar:
                    order = torch.randperm(n, generator=gen)
                    total = 0.0
                    for i in range(0, n, cfg["batch_size"]):
                        idx = order[i: i + cfg["batch_size"]]
                        opt.zero_grad(set_to_none=True)
                        loss = loss_fn(net(x[idx]), y[idx])
                        loss.backward()
                        opt.step()
                        sched.step()
                        total += float(loss) * len(idx)
                    bar.set_postfix(loss=f"{total / n:.3f}")
                bar.close()
                valid = _accuracy(net, data.x_valid, data.y_valid)
                test = _accuracy(net, data.x_test, data.y_test)
        cost = time.perf_counter() - started
        extra = {"params": count_params(net), "flops": count_macs(net, data.image_shape), "epochs": cfg["epochs"]}
        return {"valid": valid, "test": test, "cost": round(cost, 4), "extra": extra}


def _accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(x[i: i + 512])).argmax(1) for i in range(0, len(x), 512)])
    net.train()
    return round(100.0 * float((pred.numpy() == y).mean()), 4)


def default_training_oracle(space, data_path=None, epochs: Optional[int] = None, width: Optional[int] = None,
                            cells: Optional[int] = None, seed: int = 0, progress: bool = False, cache_dir=None):
    """The oracle ``nasflow search`` uses without a benchmark: the embedded digits, or ``data_path``.

    Returns ``(oracle, description)``; the description is one line for the CLI to print.
    """
    data = load_npz(data_path) if data_path is not None else load_digits()
    small_width, small_cells = SMALL_NETWORK.get(space.name, (8, 1))
    oracle = TrainingOracle(
        space, data,
        epochs=DEFAULT_EPOCHS if epochs is None else epochs,
        width=small_width if width is None else width,
        cells=small_cells if cells is None else cells,
        seed=seed, progress=progress, cache_dir=cache_dir,
    )
    source = "no --benchmark: training on the embedded digits" if data_path is None else f"training on {data.name}"
    oracle.description = (
        f"{source} ({data.describe().split(': ', 1)[1]}); each query trains a {space.name} network "
        f"(width {oracle.config['width']}, {oracle.config['cells']} cell(s) per stage) for {oracle.epochs} epochs"
    )
    return oracle, oracle.description
