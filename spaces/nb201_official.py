"""NAS-Bench-201 numbers from the official benchmark files, read through ``nas_201_api``.

The official files (``NAS-Bench-201-v1_0-e61699.pth``, ``NAS-Bench-201-v1_1-096897.pth``)
are multi-GB pickles that take minutes and tens of GB of memory to load (about 5.5x the
file size, measured on a synthetic file in the official layout), while the numbers
a search needs fit in a 2 MB table. The first load therefore writes those numbers, for
every dataset in the file, as a CSV in the ``nb201_cifar.csv`` layout under
``$NASFLOW_CACHE`` (default ``~/.nasflow/cache``); later loads of the same file (same name, size and mtime) read the
CSV through ``NB201TableOracle`` in well under a second.

Accuracies are the API's 200-epoch results (``hp='200'``, the file's ``'full'`` entry,
never the 12-epoch ``'less'`` one), averaged over seeds (``is_random=False``), in percent.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from pathlib import Path
from typing import Optional, Union

from nasflow import cache as nasflow_cache
from nasflow import torchfile
from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import BenchmarkError
from nasflow.torchfile import TorchFileError, TorchScriptError

from .nb201 import SIZE, NB201Arch, NB201Space, NB201TableOracle

HP = "200"
# Where NASBench201API's constructor finds each hp's results in the file.
FILE_KEY = {"12": "less", "200": "full"}[HP]
REQUIRED_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")
# nasflow dataset -> (API dataset whose run gives the valid accuracy, API dataset whose run
# gives the test accuracy). CIFAR-10's valid number comes from training on the train split
# ('cifar10-valid', set 'x-valid') and its test number from training on train+valid
# ('cifar10', set 'ori-test'); CIFAR-100 and ImageNet16-120 use one run, sets 'x-valid'/'x-test'.
# get_more_info picks exactly these sets for these API datasets.
SPLITS = {
    "cifar10": ("cifar10-valid", "cifar10"),
    "cifar100": ("cifar100", "cifar100"),
    "ImageNet16-120": ("ImageNet16-120", "ImageNet16-120"),
}
# What get_compute_costs reports, in its units: params in millions (MB), flops in millions,
# latency in seconds per batch of 256.
EXTRA_FIELDS = ("params", "flops", "latency")
# bump when the cache's columns change, so old caches are not misread; 2: the "rows" column
CACHE_FORMAT = 2


class NB201OfficialOracle(TabularOracle):
    """The 200-epoch NAS-Bench-201 results of one dataset, from an official file or dict.

    ``source`` is the path of an official ``.pth`` file, or a dict in the official format
    (``meta_archs``, ``arch2infos``, ``evaluated_indexes``). ``dataset`` is ``cifar10``,
    ``cifar100`` or ``ImageNet16-120``. Each ``Evaluation`` has ``cost`` = training time in
    seconds of the run that produced the valid accuracy, and ``extra`` = params (M), flops
    (M) and latency (s) where the file has them. ``cache_dir`` defaults to ``nasflow.cache.cache_dir()``.
    """

    def __init__(
        self,
        source: Union[str, os.PathLike, dict],
        dataset: str = "cifar10",
        progress: bool = False,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
    ):
        if dataset not in SPLITS:
            raise BenchmarkError(
                f"unknown NAS-Bench-201 dataset {dataset!r}; choose one of {', '.join(SPLITS)}"
            )
        self.dataset = dataset
        self.cache_path: Optional[Path] = None
        if isinstance(source, dict):
            self.source = "the NAS-Bench-201 dict given"
            per_dataset = extract_results(source, self.source, progress)
            datasets, table = tuple(per_dataset), per_dataset.get(dataset)
        else:
            path = Path(source).expanduser()
            self.source = str(path)
            if not path.is_file():
                raise BenchmarkError(f"benchmark file not found: {path}")
            self.cache_path = cache_file(path, cache_dir)
            cached = read_cache(self.cache_path, dataset)
            if cached is None:
                per_dataset = extract_results(load_official(path, progress), self.source, progress)
                write_cache(self.cache_path, per_dataset)
                cached = tuple(per_dataset), per_dataset.get(dataset)
            datasets, table = cached
        self.datasets = datasets
        if table is None:
            raise BenchmarkError(
                f"{self.source} has no 200-epoch results for {dataset}; "
                f"datasets in this file: {', '.join(datasets) or 'none'}"
            )
        self._set_table(table)


# ---------------------------------------------------------------- loading the file

class _ProgressFile(io.RawIOBase):
    """A read-only file that advances a tqdm bar by the bytes read."""

    def __init__(self, raw, bar):
        self._raw, self._bar = raw, bar

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        n = self._raw.readinto(buffer)
        self._bar.update(n or 0)
        return n

    def seek(self, offset, whence=io.SEEK_SET):
        return self._raw.seek(offset, whence)

    def tell(self):
        return self._raw.tell()


def load_official(path: Path, progress: bool = False) -> dict:
    """Unpickle an official NAS-Bench-201 file without letting it run code.

    Read by :mod:`nasflow.torchfile`, never ``torch.load``: torch 2.2.1 would run a
    TorchScript archive given as the benchmark before any check of its contents.
    """
    from tqdm import tqdm

    size = path.stat().st_size
    try:
        with open(path, "rb", buffering=0) as raw, tqdm(
            total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=not progress
        ) as bar:
            with io.BufferedReader(_ProgressFile(raw, bar), buffer_size=1 << 20) as f:
                data = torchfile.read(f)
    except TorchScriptError as e:
        raise BenchmarkError(f"{path} is {e}, not a NAS-Bench-201 file; nasflow never loads those") from None
    except TorchFileError as e:
        raise BenchmarkError(
            f"cannot read {path} ({e}); is it a complete, uncorrupted NAS-Bench-201 .pth file?"
        ) from None
    except OSError as e:
        raise BenchmarkError(f"cannot read {path} ({e.strerror or e})") from None
    return data


# ---------------------------------------------------------------- reading results via the API

def _check_layout(data, where: str) -> list:
    """The file's arch list, checked against nasflow's official index order."""
    if not isinstance(data, dict):
        raise BenchmarkError(f"{where} holds a {type(data).__name__}, not a NAS-Bench-201 dict")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise BenchmarkError(
            f"{where} is not a NAS-Bench-201 benchmark: missing {', '.join(missing)} "
            f"(expected keys {', '.join(REQUIRED_KEYS)})"
        )
    meta = data["meta_archs"]
    if not isinstance(meta, (list, tuple)) or len(meta) > SIZE:
        raise BenchmarkError(f"{where}: meta_archs must be a list of at most {SIZE} arch strings")
    official = NB201Space().enumerate()
    for index, text in enumerate(meta):
        if text != official[index].key:
            raise BenchmarkError(
                f"{where}: arch {index} is {text!r} but the official order has {official[index].key} there"
            )
    evaluated = data["evaluated_indexes"]
    if not isinstance(evaluated, (list, tuple, set)):
        raise BenchmarkError(f"{where}: evaluated_indexes must be a list of indices")
    for index in evaluated:
        if not isinstance(index, int) or not 0 <= index < len(meta):
            raise BenchmarkError(f"{where}: evaluated index {index!r} is not an index into meta_archs")
    return list(meta)


def _hp_results(data: dict, meta: list, index: int, where: str):
    """The ArchResults of one cell for hp HP, as NASBench201API's constructor builds them."""
    from nas_201_api import ArchResults

    info = data["arch2infos"].get(index)
    if not isinstance(info, dict) or FILE_KEY not in info:
        raise BenchmarkError(f"{where}: arch index {index} has no '{FILE_KEY}' ({HP}-epoch) results")
    try:
        results = ArchResults.create_from_state_dict(info[FILE_KEY])
        arch_str = results.arch_str
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise BenchmarkError(f"{where}: arch index {index}: malformed 200-epoch results ({_describe(e)})") from e
    if arch_str != meta[index]:
        raise BenchmarkError(f"{where}: results of arch index {index} are for {arch_str!r}, not {meta[index]!r}")
    return results


def _describe(e: Exception) -> str:
    return f"{type(e).__name__}: {e}".replace("\n", " ")[:200]


def _evaluation(api, index: int, dataset: str) -> Evaluation:
    valid_run, test_run = SPLITS[dataset]
    valid_info = api.get_more_info(index, valid_run, hp=HP, is_random=False)
    test_info = valid_info if test_run == valid_run else api.get_more_info(index, test_run, hp=HP, is_random=False)
    if "valid-accuracy" not in valid_info or "test-accuracy" not in test_info:
        raise KeyError(f"{dataset} valid or test accuracy")
    # cost: 'train-all-time', the summed per-epoch training time of the valid run, seed mean.
    cost = valid_info.get("train-all-time")
    try:
        costs = api.arch2infos_dict[index][HP].get_compute_costs(valid_run)
    except (AttributeError, KeyError, TypeError, ZeroDivisionError):
        costs = {}  # params/flops/latency are optional extras
    extra = {k: float(costs[k]) for k in EXTRA_FIELDS if costs.get(k) is not None}
    return Evaluation(
        valid=float(valid_info["valid-accuracy"]),
        test=float(test_info["test-accuracy"]),
        cost=None if cost is None else float(cost),
        extra=extra,
    )


def extract_results(data, where: str, progress: bool = False) -> dict[str, dict[NB201Arch, Evaluation]]:
    """dataset -> {cell: Evaluation} for every dataset that all evaluated cells have."""
    from nas_201_api import NASBench201API
    from tqdm import tqdm

    meta = _check_layout(data, where)
    # The constructor deep-copies the whole dict (doubling tens of GB for the official
    # files) and also builds the 12-epoch results. Giving it no results and filling
    # arch2infos_dict as it would, sharing the data and for hp '200' only, leaves the
    # queries (get_more_info) exactly as the API answers them.
    api = NASBench201API(
        {"meta_archs": meta, "arch2infos": {}, "evaluated_indexes": data["evaluated_indexes"]}, verbose=False
    )
    if not api.evaluated_indexes:
        raise BenchmarkError(f"{where} has no evaluated architectures")
    space = NB201Space()
    per_dataset: dict[str, dict[NB201Arch, Evaluation]] = {d: {} for d in SPLITS}
    for index in tqdm(api.evaluated_indexes, desc="NAS-Bench-201 results", disable=not progress):
        api.arch2infos_dict[index] = {HP: _hp_results(data, meta, index, where)}
        names = set(api.arch2infos_dict[index][HP].get_dataset_names())
        arch = space.arch_at(index)
        for dataset in list(per_dataset):
            if not set(SPLITS[dataset]) <= names:
                del per_dataset[dataset]  # a dataset is usable only if every cell has it
                continue
            try:
                per_dataset[dataset][arch] = _evaluation(api, index, dataset)
            except (AttributeError, KeyError, TypeError, ValueError, IndexError, AssertionError) as e:
                raise BenchmarkError(
                    f"{where}: arch index {index}: malformed 200-epoch results for {dataset} ({_describe(e)})"
                ) from e
    if not per_dataset:
        raise BenchmarkError(
            f"{where} has no dataset with 200-epoch results for every cell (looked for {', '.join(SPLITS)})"
        )
    return per_dataset


# ---------------------------------------------------------------- the CSV cache

def cache_file(path: Path, cache_dir=None) -> Path:
    """Where the numbers of ``path`` are cached: keyed by its name, size and mtime."""
    st = path.stat()
    name = f"{path.name}.{st.st_size}.{st.st_mtime_ns}"
    return nasflow_cache.entry(None, name, CACHE_FORMAT, ".csv", directory=cache_dir)


def _columns(dataset: str) -> list[str]:
    return [f"{dataset}_{c}" for c in ("valid", "test", "cost") + EXTRA_FIELDS]


def _header(datasets) -> list[str]:
    # every row repeats the row count: a file cut at a line boundary still parses, but is seen to be short
    return ["index", "arch"] + [c for d in datasets for c in _columns(d)] + ["rows"]


def _cell(value) -> str:
    return "" if value is None else repr(float(value))  # repr round-trips floats exactly


def write_cache(cache: Path, per_dataset: dict[str, dict[NB201Arch, Evaluation]]) -> None:
    """Write all datasets as one CSV, atomically; a cache that cannot be written only warns."""
    space = NB201Space()
    archs = sorted({a for table in per_dataset.values() for a in table}, key=space.index_of)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(_header(per_dataset))
    for arch in archs:
        row = [space.index_of(arch), arch.key]
        for table in per_dataset.values():
            e = table[arch]
            row += [_cell(e.valid), _cell(e.test), _cell(e.cost)] + [_cell(e.extra.get(k)) for k in EXTRA_FIELDS]
        writer.writerow(row + [len(archs)])
    nasflow_cache.write(cache, lambda f: f.write(text.getvalue().encode("utf-8")))


def read_cache(cache: Path, dataset: str):
    """``(datasets, table or None)`` from a cache file; None if absent or (warned) unusable."""
    if not nasflow_cache.readable(cache):
        return None
    try:
        with open(cache, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            datasets = tuple(d for d in SPLITS if set(_columns(d)) <= set(header))
            if not datasets or header != _header(datasets):
                raise ValueError("unexpected columns")
            rows = list(reader)
        if any(len(row) != len(header) or row[-1] != str(len(rows)) for row in rows):
            raise ValueError("cut short or rows missing")
        if dataset not in datasets:
            return datasets, None
        arch_at = header.index("arch")
        cost_at, *extra_at = (header.index(c) for c in _columns(dataset)[2:])
        costs = {}
        for row in rows:
            extra = {k: _finite(row[i]) for k, i in zip(EXTRA_FIELDS, extra_at) if row[i] != ""}
            costs[row[arch_at]] = (_finite(row[cost_at]) if row[cost_at] != "" else None), extra
        table = {}
        # valid and test are read (and checked finite) by the table reader every CSV goes through
        for arch, e in NB201TableOracle(cache, dataset).items():
            cost, extra = costs[arch.key]
            table[arch] = dataclasses.replace(e, cost=cost, extra=extra)
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration, ValueError, IndexError, KeyError, BenchmarkError) as e:
        # rebuilt from the official file
        nasflow_cache.report_damaged(cache, str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
        return None
    return datasets, table


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text!r}")
    return value
