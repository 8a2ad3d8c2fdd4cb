"""Network zero-cost proxies (synflow, snip, grad_norm, jacov, naswot) on real NB-201 networks."""
import csv
import subprocess
import sys

import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.metrics import spearman_rho
from nasflow.proxies import zero_cost, zero_cost_table
from nasflow.proxies_grad import NETWORK_PROXIES, jacov_score, probe_batch
from nasflow.spaces.nb201 import NB201Space

NAMES = list(NETWORK_PROXIES)
SPACE = NB201Space()
CELLS = {
    "none": SPACE.make(["none"] * 6),
    "pool": SPACE.make(["avg_pool_3x3"] * 6),
    # convolutions on every edge; 1x1 keeps the test cheap
    "conv": SPACE.make(["nor_conv_1x1", "nor_conv_3x3", "nor_conv_1x1", "skip_connect", "nor_conv_1x1", "nor_conv_1x1"]),
    "skip": SPACE.make(["skip_connect", "none", "skip_connect", "none", "none", "skip_connect"]),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("zcp-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NASFLOW_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def scored(cache):
    return zero_cost_table(SPACE, list(CELLS.values()), NAMES)


def score(scored, proxy, cell):
    return scored[proxy][list(CELLS).index(cell)]


def test_every_proxy_is_finite(scored):
    for name in NAMES:
        assert scored[name].shape == (len(CELLS),)
        assert np.isfinite(scored[name]).all(), name


def test_a_cell_whose_output_ignores_its_input_scores_lowest(scored):
    # all-`none` cells multiply every feature map by 0: no weight moves the output
    for name in ("synflow", "snip", "grad_norm"):
        assert score(scored, name, "none") == 0.0, name
        assert (np.delete(scored[name], 0) > 0).all(), name
    # identical ReLU codes for every image: a singular kernel, and perfectly correlated Jacobians
    assert score(scored, "naswot", "none") == 0.0
    for name in ("naswot", "jacov"):
        assert scored[name].argmin() == 0, name


def test_data_dependent_proxies_tell_convolutions_from_pooling(scored):
    for name in ("naswot", "jacov", "snip", "grad_norm", "synflow"):
        assert score(scored, name, "conv") != pytest.approx(score(scored, name, "pool"), rel=1e-3), name
    # pooling and skips mix images' ReLU codes less than learned convolutions do
    assert score(scored, "naswot", "conv") > score(scored, "naswot", "pool")
    # more parameters on the path, more synaptic flow
    assert score(scored, "synflow", "conv") > score(scored, "synflow", "skip")


def test_same_cell_same_score_without_cache_and_in_another_order(scored):
    archs = [CELLS["skip"], CELLS["conv"]]
    again = zero_cost_table(SPACE, archs, NAMES, cache=False)
    for name in NAMES:
        np.testing.assert_array_equal(again[name], [score(scored, name, "skip"), score(scored, name, "conv")])


def test_scores_are_cached_per_space_and_proxy(scored, cache):
    files = sorted(p.name for p in (cache / "proxies").glob("nb201-*.npz"))
    assert len(files) == len(NAMES) and all("-b" in f for f in files)
    synflow_file = next((cache / "proxies").glob("nb201-synflow-*.npz"))
    with np.load(synflow_file) as z:
        keys, values = z["keys"], z["values"].copy()
    values[list(keys).index(CELLS["pool"].key)] = -7.0
    np.savez_compressed(synflow_file, keys=keys, values=values)
    # a poisoned value comes back: the cache answered and nothing was recomputed
    assert zero_cost(SPACE, [CELLS["pool"]], "synflow")[0] == -7.0


def test_synflow_ranks_real_nb201_cells(cache, nb201_oracle):
    rng = np.random.default_rng(0)
    archs = [SPACE.arch_at(int(i)) for i in rng.choice(SPACE.size, size=30, replace=False)]
    synflow = zero_cost(SPACE, archs, "synflow")
    accuracy = [nb201_oracle.query(a).test for a in archs]
    assert spearman_rho(synflow, accuracy) > 0.4


def test_probe_batch_is_seeded_balanced_and_standardised():
    x, y = probe_batch(20, seed=3)
    x2, y2 = probe_batch(20, seed=3)
    assert x.shape == (20, 3, 32, 32) and (x == x2).all() and (y == y2).all()
    assert np.bincount(y.numpy(), minlength=10).tolist() == [2] * 10
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    assert not (probe_batch(20, seed=4)[0] == x).all()


def test_jacov_prefers_uncorrelated_gradients_and_has_a_finite_floor():
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(8, 50))
    correlated = rng.normal(size=(1, 50)) + 0.1 * rng.normal(size=(8, 50))
    constant = np.zeros((8, 50))
    assert jacov_score(independent) > jacov_score(correlated) > jacov_score(constant)
    assert np.isfinite(jacov_score(constant))


def test_space_without_networks_is_a_one_line_error(cache):
    class TableOnly:
        name = "table-only"

    with pytest.raises(NasflowError, match="cannot build networks"):
        zero_cost(TableOnly(), [CELLS["skip"]], "naswot")


def nasflow(*args):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *args], capture_output=True, text=True)


def test_cli_writes_one_column_per_proxy_with_worker_processes(scored, cache, tmp_path):
    out = tmp_path / "proxies.csv"
    result = nasflow("proxies", "--space", "nb201", "--sample", "2", "--seed", "5", "--proxies", "synflow,params,naswot",
                     "--workers", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arch", "synflow", "params", "naswot"] and len(rows) == 2
    archs = [SPACE.parse(r["arch"]) for r in rows]
    assert len(set(archs)) == 2
    # worker processes compute exactly what this process computes
    for name in ("synflow", "params", "naswot"):
        np.testing.assert_array_equal([float(r[name]) for r in rows], zero_cost(SPACE, archs, name, cache=False))


@pytest.mark.parametrize("args, message", [
    (["--proxies", "synflw"], "unknown zero-cost proxy 'synflw'"),
    (["--space", "nb2011"], "unknown search space 'nb2011'"),
    (["--space", "nb101"], "--sample"),
    (["--sample", "0"], "--sample"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = nasflow("proxies", *args, "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "x.csv").exists()
