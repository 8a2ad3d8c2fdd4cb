"""Latency measured live (nasflow.latency): per-cell medians of timed forward passes, cached per machine."""
import numpy as np
import pytest

from nasflow.cost_metrics import CostMetrics, feasible_space, parse_constraints
from nasflow.latency import LatencySetup, cache_path, measure_latency
from nasflow.restricted import RestrictedSpace

EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
HEAVY = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SMALL = LatencySetup(batch_size=2, image_size=8, width=4, cells=1, repeats=3, warmup=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    return tmp_path


def test_latency_is_measured_once_then_read_from_the_cache(nb201, cache, one_thread):
    archs = [nb201.parse(EMPTY), nb201.parse(HEAVY), nb201.parse(EMPTY)]
    first = measure_latency(nb201, archs, SMALL)
    assert first.shape == (3,) and np.isfinite(first).all() and (first > 0).all() and first[0] == first[2]
    assert cache_path(nb201, SMALL).is_file()
    # a re-measurement would differ in the last digits: equal floats come from the cache
    assert measure_latency(nb201, archs[::-1], SMALL).tolist() == first[::-1].tolist()


def test_each_setup_and_machine_has_its_own_cache_file(nb201, cache):
    assert cache_path(nb201, SMALL) != cache_path(nb201, LatencySetup(batch_size=4, image_size=8, width=4, cells=1))
    assert cache_path(nb201, SMALL) == cache_path(nb201, LatencySetup(batch_size=2, image_size=8, width=4, cells=1,
                                                                          repeats=3, warmup=1))


def test_a_heavier_network_measures_slower(nb201, cache, one_thread):
    # the all-conv cell has ~28x the FLOPs of the empty one: a median of timed passes sees it on any CPU
    setup = LatencySetup(batch_size=4, width=8, cells=1, repeats=5, warmup=2)
    empty, heavy = measure_latency(nb201, [nb201.parse(EMPTY), nb201.parse(HEAVY)], setup, use_cache=False)
    assert heavy > 2 * empty


def test_bad_setup_is_one_line():
    from nasflow.errors import NasflowError

    with pytest.raises(NasflowError, match="latency batch size must be an integer >= 1"):
        LatencySetup(batch_size=0)


def test_a_constraint_on_live_latency_keeps_the_faster_cells(nb201, cache, one_thread):
    cells = [nb201.parse(EMPTY), nb201.parse(HEAVY), nb201.parse(EMPTY.replace("none~0|+", "skip_connect~0|+", 1))]
    space = RestrictedSpace(nb201, cells, "three cells")
    metrics = CostMetrics(space)
    assert "latency" in metrics.names
    latency = metrics.values("latency", cells)  # the official network, one image, measured and cached
    bound = float(np.median(latency))
    feasible = feasible_space(space, parse_constraints([f"latency<={bound!r}"]), metrics)
    assert set(feasible.cells) == {a for a, ms in zip(cells, latency) if ms <= bound}
    assert nb201.parse(HEAVY) not in feasible.cells


def test_a_training_search_times_the_network_it_trains(nb201, cache, one_thread):
    # the digits are 1x8x8 with 10 classes and the search trains a small network: a latency constraint must be
    # about that network, on a batch of those images, not about the official 3x32x32 one
    from nasflow.data import load_digits
    from nasflow.experiments.runs import constrained
    from nasflow.training import TrainingOracle

    oracle = TrainingOracle(nb201, load_digits(), width=4, cells=1, device="cpu")
    setup = oracle.latency_setup(batch_size=3)
    assert (setup.image_size, setup.image_width, setup.in_channels, setup.num_classes) == (8, 8, 1, 10)
    assert (setup.width, setup.cells, setup.batch_size, setup.device) == (4, 1, 3, "cpu")
    cells = [nb201.parse(EMPTY), nb201.parse(HEAVY)]
    space = RestrictedSpace(nb201, cells, "two cells")
    settings = {"metrics_table": None, "constraints": ("latency<=1e9",), "latency_batch": 3}
    assert set(constrained(space, settings, oracle=oracle).cells) == set(cells)
    assert cache_path(nb201, setup).is_file() and not cache_path(nb201, LatencySetup(batch_size=3)).is_file()
    timed = measure_latency(nb201, cells, setup)  # from that cache: the values the constraint was checked on
    assert np.isfinite(timed).all() and (timed > 0).all()


def test_a_live_latency_objective_times_the_trained_network_of_each_queried_cell(nb201, cache, tmp_path):
    import csv

    from clirun import run_cli
    from nasflow.data import load_digits
    from nasflow.training import TrainingOracle

    done = run_cli("search", "--searcher", "random", "--objectives", "valid,-latency", "--latency-batch", "4",
                   "--budget", "4", "--epochs", "1", "--width", "4", "--device", "cpu", "--out", str(tmp_path / "run"),
                   cache=cache)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "run" / "front.csv")))
    assert rows and all(float(r["latency"]) > 0 for r in rows)
    # the values on the front are the cached timings of the network the search trained, on 4 of its images
    setup = TrainingOracle(nb201, load_digits(), width=4, device="cpu").latency_setup(batch_size=4)
    cells = [nb201.parse(r["arch"]) for r in rows]
    np.testing.assert_allclose(measure_latency(nb201, cells, setup), [float(r["latency"]) for r in rows], rtol=1e-6)
