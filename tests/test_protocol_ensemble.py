"""The predictor protocol's ensembles: K predictors with consecutive seeds, scores standardised and averaged."""
import numpy as np
import pytest

from nasflow.errors import DataError

OPTIONS = dict(dim=8, layers=2, epochs=3, batch_size=16)


@pytest.fixture(scope="session")
def small_benchmark(nb201, nb201_oracle):
    archs = nb201.enumerate()[::30][:400]
    return archs, np.array([nb201_oracle.query(a).valid for a in archs])


def _run(nb201, small_benchmark, ensemble, **kwargs):
    from nasflow.predictors.protocol import run_protocol

    return run_protocol(
        nb201, *small_benchmark, encoders=["gin"], pretrains=["none"], ratios=[0.1], seeds=[5], perm_seeds=[2021],
        pool=200, options=OPTIONS, ensemble=ensemble, **kwargs,
    )  # fmt: skip


def test_ensemble_is_recorded_next_to_its_first_member(nb201, small_benchmark):
    from nasflow import Predictor
    from nasflow.metrics import kendall_tau
    from nasflow.predictors.protocol import field_split, format_table, summarise

    (single,) = _run(nb201, small_benchmark, 1)
    first, pair = _run(nb201, small_benchmark, 2)
    assert (single.members, first.members, pair.members) == (1, 1, 2)
    assert first.tau == single.tau and first.seed == pair.seed == 5
    # the ensemble is the mean of the members' standardised scores, members seeded 5 and 6
    archs, values = small_benchmark
    train, val, test = field_split(len(archs), 2021, 0.1, 200)
    scores = []
    for seed in (5, 6):
        p = Predictor(nb201, encoder="gin", pretrain="none", seed=seed, **OPTIONS)
        p.fit([archs[i] for i in train], values[train], [archs[i] for i in val], values[val])
        s = p.predict([archs[i] for i in test])
        scores.append((s - s.mean()) / s.std())
    assert pair.tau == pytest.approx(kendall_tau(np.mean(scores, axis=0), values[test]))
    assert pair.tau != first.tau
    rows = summarise([first, pair])
    assert [r["members"] for r in rows] == [1, 2]
    assert "none, ensemble of 2 [batch_size=16, dim=8, epochs=3, layers=2]" in format_table(rows)
    assert single.options == "batch_size=16, dim=8, epochs=3, layers=2"


def test_merge_keeps_runs_of_other_options_apart_and_counts_repeats_once(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from nasflow.predictors.protocol import ProtocolRun

    script = Path(__file__).parents[1] / "benchmarks" / "predictor_protocol.py"
    run = dict(encoder="gin", pretrain="fgp", ratio=0.01, perm_seed=21, seed=21, n_train=78, tau=0.7, rho=0.9,
               p1=0.5, p5=0.6, fit_seconds=1.0, pretrain_seconds=2.0)  # fmt: skip
    default, zcp = ProtocolRun(**run), ProtocolRun(**{**run, "tau": 0.8, "options": "features=['zcp']"})
    (tmp_path / "a.json").write_text(json.dumps([default.to_dict()]))
    (tmp_path / "b.json").write_text(json.dumps([zcp.to_dict(), default.to_dict()]))
    done = subprocess.run([sys.executable, str(script), "--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    rows = [line for line in out.splitlines() if line.startswith("| 0.01 |")]
    assert len(rows) == 2 and "| fgp | 1 | 0.700" in rows[0] and "fgp [features=['zcp']] | 1 | 0.800" in rows[1]
    assert "skipped 1 run" in err


def test_runs_saved_before_ensembles_still_load():
    from nasflow.predictors.protocol import ProtocolRun

    old = dict(encoder="gin", pretrain="fgp", ratio=0.01, perm_seed=21, seed=21, n_train=78, tau=0.7, rho=0.9,
               p1=0.5, p5=0.6, fit_seconds=1.0, pretrain_seconds=2.0)  # fmt: skip
    assert ProtocolRun(**old).members == 1


def test_an_empty_ensemble_is_refused(nb201, small_benchmark):
    with pytest.raises(DataError, match="ensemble"):
        _run(nb201, small_benchmark, 0)


def test_an_ensemble_of_fine_tunings_shares_one_pretraining(nb201, small_benchmark, tmp_path, monkeypatch):
    from nasflow.predictors.protocol import format_table, run_protocol, summarise

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    runs = run_protocol(
        nb201, *small_benchmark, encoders=["gin"], pretrains=["fgp"], ratios=[0.1], seeds=[5], perm_seeds=[2021],
        pool=200, options={**OPTIONS, "pretrain_epochs": 1}, ensemble=2, ensemble_over="finetuning",
    )  # fmt: skip
    first, pair = runs
    assert (first.ensemble_over, pair.ensemble_over) == ("pretraining", "finetuning")
    assert len(list(tmp_path.glob("fgp/*.safetensors"))) == 1
    assert pair.pretrain_seconds == first.pretrain_seconds > 0  # the second member loaded the first one's
    assert pair.tau != first.tau
    assert "fgp, ensemble of 2 fine-tunings" in format_table(summarise(runs))
    with pytest.raises(DataError, match="ensemble_over"):
        _run(nb201, small_benchmark, 2, ensemble_over="snapshots")


def test_finetune_seed_varies_fine_tuning_only(nb201, small_benchmark):
    from nasflow import Predictor

    archs, values = small_benchmark
    base, other = (Predictor(nb201, seed=4, finetune_seed=fs, **OPTIONS)._fgp_config("all") for fs in (None, 9))
    assert other.cache_path() == base.cache_path()
    options = {**OPTIONS, "pretrain": "none"}
    fits = {fs: Predictor(nb201, seed=4, finetune_seed=fs, **options).fit(archs[:30], values[:30]).predict(archs[30:60])
            for fs in (None, 4, 9)}  # fmt: skip
    np.testing.assert_array_equal(fits[None], fits[4])
    assert not np.allclose(fits[None], fits[9])


def test_paired_compares_fgp_with_none_run_by_run_and_only_where_both_ran():
    from nasflow.predictors.protocol import ProtocolRun, format_paired, paired

    base = dict(encoder="gatedgcn", ratio=0.01, n_train=72, rho=0.8, p5=0.4, fit_seconds=1.0, pretrain_seconds=0.0)
    runs = []
    # FGP's P@1% is below none's on the mean of the first permutation's runs but wins 2 of the 3 pairs
    for perm, seed, none_p1, fgp_p1 in ((1, 21, 0.10, 0.12), (2, 21, 0.30, 0.31), (3, 21, 0.20, 0.05)):
        runs.append(ProtocolRun(pretrain="none", perm_seed=perm, seed=seed, tau=0.60, p1=none_p1, **base))
        runs.append(ProtocolRun(pretrain="fgp", perm_seed=perm, seed=seed, tau=0.65, p1=fgp_p1, **base))
    runs.append(ProtocolRun(pretrain="fgp", perm_seed=4, seed=21, tau=0.9, p1=0.9, **base))  # no none twin: left out
    (row,) = paired(runs)
    assert (row["pairs"], row["perms"], row["seeds"]) == (3, 3, 1)
    assert row["tau"]["mean"] == pytest.approx(0.05) and (row["tau"]["wins"], row["tau"]["losses"]) == (3, 0)
    d = np.array([0.02, 0.01, -0.15])
    assert row["p1"]["mean"] == pytest.approx(d.mean())
    assert row["p1"]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert (row["p1"]["wins"], row["p1"]["losses"]) == (2, 1)
    assert "| 0.01 | gatedgcn | 3 (3 x 1) | +0.050 ± 0.000 (3/0) | -0.040 ±" in format_paired([row])
