"""Network zero-cost proxies (synflow, snip, grad_norm, jacov, naswot) on real NB-201 networks."""
import csv
import subprocess
import sys

import numpy as np
import pytest

from nasflow.core import BaseSpace
from nasflow.errors import NasflowError
from nasflow.metrics import spearman_rho
from nasflow.proxies import cache_path, zero_cost, zero_cost_table
from nasflow.proxies_grad import INIT_SEED, NETWORK_PROXIES, PROBE_BATCH, data_scores, jacov_score, probe_batch
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
    files = {name: cache_path(SPACE, name) for name in NAMES}
    assert sorted((cache / "proxies").glob("nb201-*.npz")) == sorted(files.values())
    # a data-dependent score belongs to its probe batch; synflow's (data-free) does not
    for name, path in files.items():
        assert (f"-b{PROBE_BATCH}-" in path.name) == (name != "synflow"), path.name
    synflow_file = files["synflow"]
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
    class TableOnly(BaseSpace):  # declares no network builder
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


def test_two_writers_of_one_cache_file_keep_each_others_cells(cache):
    from nasflow.proxies import _load, _save

    path = cache_path(SPACE, "synflow")
    assert cache in path.parents
    before = _load(path)
    _save(path, {"cell-from-run-a": 1.0})
    # run b loaded the file before run a wrote, and writes only its own cells
    _save(path, {"cell-from-run-b": 2.0})
    after = _load(path)
    assert after["cell-from-run-a"] == 1.0 and after["cell-from-run-b"] == 2.0
    assert before.items() <= after.items()


def test_naswot_refuses_a_network_without_relu_modules():
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(NasflowError, match="nn.ReLU"):
        data_scores(net, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), ["naswot"])


def reference_scores(net, x, y) -> dict:
    """The proxies as first written: one train-mode pass for the loss, another for the input
    gradient, the NASWOT kernel as two float64 products per ReLU, every ReLU on its own."""
    import torch
    import torch.nn.functional as F

    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    net.train()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    used = [m for m in layers if m.weight.grad is not None]
    scores = {"snip": sum(float((m.weight * m.weight.grad).abs().sum()) for m in used),
              "grad_norm": sum(float(m.weight.grad.norm()) for m in used)}
    net.zero_grad()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def count(module, inputs, output):
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    x = x.clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    for h in hooks:
        h.remove()
    scores["jacov"] = jacov_score(x.grad.reshape(n, -1).double().numpy())
    sign, logdet = torch.linalg.slogdet(kernel)
    scores["naswot"] = float(logdet) if sign != 0 else 0.0
    return scores


def test_one_fused_pass_gives_the_two_pass_scores():
    import torch

    x, y = probe_batch()
    rng = np.random.default_rng(11)
    cells = [CELLS["conv"], CELLS["skip"]] + [SPACE.arch_at(int(i)) for i in rng.choice(SPACE.size, 3, replace=False)]
    names = ["snip", "grad_norm", "jacov", "naswot"]
    for arch in cells:
        torch.manual_seed(INIT_SEED)
        fused = data_scores(SPACE.network(arch), x, y, names)
        torch.manual_seed(INIT_SEED)
        reference = reference_scores(SPACE.network(arch), x, y)
        for name in names:
            # same float32 operations in the same order: equal, not merely close
            assert fused[name] == pytest.approx(reference[name], rel=1e-9, abs=1e-9), (str(arch), name)
        # the reference's kernel is integer-valued: fused NASWOT must not lose a count to float32
        assert fused["naswot"] > 0


def test_fused_pass_computes_only_what_is_asked():
    import torch

    x, y = probe_batch()
    torch.manual_seed(INIT_SEED)
    net = SPACE.network(CELLS["conv"])
    assert set(data_scores(net, x, y, ["naswot"])) == {"naswot"}
    assert set(data_scores(net, x, y, ["jacov"])) == {"jacov"}
    assert set(data_scores(net, x, y, ["grad_norm"])) == {"grad_norm"}
    # nothing is left on the weights for the next proxy (synflow reads .grad)
    assert all(p.grad is None for p in net.parameters())


def test_zcp_features_are_signed_logs_of_the_scores(cache):
    from nasflow.proxies import zcp_features

    archs = [CELLS["skip"], CELLS["conv"]]
    features = zcp_features(SPACE, archs, ["params", "jacov"])
    assert features.shape == (2, 2)
    np.testing.assert_allclose(features[:, 0], np.log1p(zero_cost(SPACE, archs, "params")))
    assert (features[:, 1] == -np.log1p(-zero_cost(SPACE, archs, "jacov"))).all()


def test_predictor_with_zcp_features_learns_from_them_and_round_trips(cache, tmp_path):
    from nasflow.metrics import kendall_tau
    from nasflow.predictors.predictor import Predictor

    rng = np.random.default_rng(3)
    index = rng.choice(SPACE.size, size=160, replace=False)
    archs = [SPACE.arch_at(int(i)) for i in index]
    # a target the feature vector states outright: the head only has to read it
    target = -np.log(zero_cost(SPACE, archs, "flops")) + 0.5 * np.log(zero_cost(SPACE, archs, "params"))
    predictor = Predictor(SPACE, pretrain="none", epochs=60, features=["zcp"], zcp_proxies=["params", "flops"], seed=0)
    predictor.fit(archs[:60], target[:60])
    assert predictor._model.head[0].in_features == predictor._new_encoder().out_dim + 2
    predicted = predictor.predict(archs[60:])
    assert kendall_tau(predicted, target[60:]) > 0.7
    predictor.save(tmp_path / "p.pt")
    loaded = Predictor.load(tmp_path / "p.pt")
    assert loaded.features == ("zcp",) and loaded.zcp_proxies == ("params", "flops")
    np.testing.assert_array_equal(loaded.predict(archs[60:]), predicted)


@pytest.mark.parametrize("options, message", [
    ({"features": ["zcpp"]}, "unknown predictor feature 'zcpp'"),
    ({"features": ["zcp"], "zcp_proxies": ["synflw"]}, "unknown zero-cost proxy 'synflw'"),
])
def test_predictor_feature_options_are_checked(options, message):
    from nasflow.predictors.predictor import Predictor

    with pytest.raises(NasflowError, match=message):
        Predictor(SPACE, **options).pretrain()


def test_a_predictor_without_features_has_the_same_state_keys_as_before():
    from nasflow.predictors.predictor import Predictor

    model = Predictor(SPACE, pretrain="none")._new_model()
    assert not any(k.startswith("extra_") for k in model.state_dict())
