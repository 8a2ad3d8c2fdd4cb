"""A smoke run of benchmarks/zero_cost_crosscheck.py on three cells (about 4 CPU seconds).

The full run (725 cells, with the diagnostics) is measured by the script itself; this only
keeps it working as the library's public API moves.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "zero_cost_crosscheck.py"
PROXIES = {"synflow", "snip", "grad_norm", "jacov", "naswot", "params", "flops"}


def test_three_cells_give_a_rho_per_proxy_and_dataset(benchmarks_dir, tmp_path):
    if not (benchmarks_dir / "zero_cost" / "naslib_zc_nb201.csv").is_file():
        pytest.skip("zero_cost/naslib_zc_nb201.csv not among the benchmark tables")
    out = tmp_path / "crosscheck.json"
    env = {**os.environ, "NASFLOW_BENCHMARKS": str(benchmarks_dir)}
    r = subprocess.run([sys.executable, str(SCRIPT), "--limit", "3", "--workers", "1", "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cells"] == 3
    assert set(report["default"]) == PROXIES
    for name, per_dataset in report["default"].items():
        assert set(per_dataset) == {"cifar10", "cifar100"}
        for entry in per_dataset.values():
            assert -1.0 <= entry["rho"] <= 1.0 and entry["n"] == 3, (name, entry)
    # params are the same count in both (NASLib's CIFAR-100 network only adds head weights, a constant)
    assert report["default"]["params"]["cifar10"]["rho"] == pytest.approx(1.0)
    assert "| synflow |" in r.stdout
