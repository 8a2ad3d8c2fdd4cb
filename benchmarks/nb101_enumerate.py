"""The enumeration of all NAS-Bench-101 cells at full scale, and how the two samplers cover the space.

1. An empty cache: the first enumeration in a fresh process (wall time, peak RSS of that process).
2. A fresh process reading the cache: ``load_cells()`` time, and ``NB101Space().enumerate()`` (423,624 archs).
3. Checks: 423,624 unique cells; every hash of nb101_1k.jsonl and nb101_20k.jsonl found by ``index_of``,
   and each of the 1,000 cells given with its matrix is the enumeration's cell at that row.
4. The samplers: share of each vertex count (2 = the bare input->output cell) under the even sampler
   (``NB101Space.sample``, the default) and the benchmark's recipe (``sample_official``), next to the share
   in the space itself, and the time per sample.

    NASFLOW_BENCHMARKS=../shared/benchmarks python benchmarks/nb101_enumerate.py
    python benchmarks/nb101_enumerate.py --samples 5000 --cache-dir /tmp/nb101-cache
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, time
start = time.perf_counter()
from nasflow.spaces.nb101_enumerate import load_cells
cells = load_cells(progress=sys.argv[1] == "1")
loaded = time.perf_counter() - start
if sys.argv[2] == "1":
    from nasflow.spaces.nb101 import NB101Space
    t = time.perf_counter(); n = len(NB101Space().enumerate()); listed = time.perf_counter() - t
else:
    n, listed = len(cells), None
import resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
print(json.dumps({"seconds": loaded, "cells": len(cells), "archs": n, "enumerate_s": listed, "rss_mb": rss}))
"""


def run_child(cache: Path, progress: bool, list_archs: bool) -> dict:
    env = dict(os.environ, NASFLOW_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-c", CHILD, str(int(progress)), str(int(list_archs))], env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def find_file(name: str) -> Path:
    from nasflow.benchfiles import find_benchmark

    return Path(find_benchmark("nb101", (name,), None, "https://github.com/google-research/nasbench"))


def sampler_shares(n: int, seed: int) -> dict:
    from nasflow.spaces.nb101 import NB101Space
    from nasflow.spaces.nb101_graphs import cell_counts

    space = NB101Space()
    shapes, counts = cell_counts()
    in_space = Counter()
    for s, c in zip(shapes, counts):
        in_space[s.vertices] += int(c)
    rows = {"space": {v: c / counts.sum() for v, c in in_space.items()}}
    for name, draw in (("even", space.sample), ("official", space.sample_official)):
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        vertices = Counter(draw(rng).num_vertices for _ in range(n))
        rows[name] = {v: c / n for v, c in vertices.items()}
        rows[name]["us_per_sample"] = (time.perf_counter() - start) / n * 1e6
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", default=None, help="an empty directory for the cache (default: a temporary one)")
    ap.add_argument("--samples", type=int, default=20_000, help="cells drawn by each sampler")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="show the enumeration's progress bar")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nb101-enum-") as tmp:
        cache = Path(args.cache_dir or tmp)
        if any(cache.glob("nb101-cells-*")):
            sys.exit(f"{cache} already holds an enumeration; give an empty --cache-dir")
        first = run_child(cache, args.progress, list_archs=False)
        cached = run_child(cache, False, list_archs=True)

        os.environ["NASFLOW_CACHE"] = str(cache)
        from nasflow.spaces.nb101 import NB101Arch, NB101Space
        from nasflow.spaces.nb101_enumerate import cache_file, load_cells

        cells = load_cells()
        size_mb = cache_file().stat().st_size / 2**20
        unique = len(np.unique(cells.hashes))
        rows_1k = [json.loads(line) for line in open(find_file("nb101_1k.jsonl"))]
        hashes_20k = [json.loads(line)["hash"] for line in open(find_file("nb101_20k.jsonl"))]
        found_1k = cells.index_of([r["hash"] for r in rows_1k])
        same_cell = sum(i >= 0 and cells.arch(int(i)) == NB101Arch(r["matrix"], r["ops"])
                        and cells.arch(int(i)).key == NB101Arch(r["matrix"], r["ops"]).key
                        for i, r in zip(found_1k, rows_1k))
        found_20k = int((cells.index_of(hashes_20k) >= 0).sum())
        space = NB101Space()
        rows = np.random.default_rng(args.seed).choice(len(cells), size=1_000, replace=False).tolist() + [0, 423_623]
        indexed = sum(space.arch_at(i) == cells.arch(i) and space.index_of(cells.arch(i)) == i for i in rows)

    print(f"first enumeration (empty cache, fresh process): {first['seconds']:.1f} s, "
          f"peak RSS {first['rss_mb']:.0f} MB, {first['cells']:,d} cells")
    print(f"from the cache (fresh process): load_cells {cached['seconds']:.2f} s; "
          f"NB101Space().enumerate() {cached['archs']:,d} archs in {cached['enumerate_s']:.1f} s; "
          f"peak RSS {cached['rss_mb']:.0f} MB; cache file {size_mb:.1f} MiB")
    print(f"cells {len(cells):,d} (expected 423,624), unique hashes {unique:,d}")
    print(f"nb101_1k.jsonl: {int((found_1k >= 0).sum()):,d}/{len(rows_1k):,d} hashes found, "
          f"{same_cell:,d} the same cell; nb101_20k.jsonl: {found_20k:,d}/{len(hashes_20k):,d} found")

    print(f"NB101Space.arch_at / index_of agree with the enumeration on {indexed:,d}/{len(rows):,d} cells")

    shares = sampler_shares(args.samples, args.seed)
    print(f"\nshare of cells by vertex count ({args.samples:,d} draws per sampler, seed {args.seed})")
    print(f"{'vertices':>9} " + " ".join(f"{name:>9}" for name in shares))
    for v in range(2, 8):
        print(f"{v:>9} " + " ".join(f"{shares[name].get(v, 0.0):>9.4%}" for name in shares))
    print(f"{'us/sample':>9} {'':>9} " + " ".join(f"{shares[n]['us_per_sample']:>9.0f}" for n in ("even", "official")))
    ok = len(cells) == unique == 423_624 and found_20k == len(hashes_20k) and same_cell == len(rows_1k)
    ok = ok and indexed == len(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
