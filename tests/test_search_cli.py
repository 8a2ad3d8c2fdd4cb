import csv
import json
import subprocess
import sys

import pytest


def nasflow(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished_run(nb201_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    done = nasflow("search", "--searcher", "evolution", "--budget", 30, "--seed", 2, "--benchmark", nb201_csv, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done


def test_search_writes_result_trajectory_and_journal(finished_run):
    out, done = finished_run
    result = json.loads((out / "result.json").read_text())
    trajectory = rows(out / "trajectory.csv")
    assert result["queries"] == 30 == len(trajectory) == len({r["arch"] for r in trajectory})
    assert result["best_arch"] == trajectory[-1]["best_arch"] and result["config"]["seed"] == 2
    assert result["regret_test"] == pytest.approx(94.3733 - result["best_test"])
    assert len((out / "journal.jsonl").read_text().splitlines()) == 31
    assert f"{result['best_valid']:.4f}" in done.stdout and "regret" in done.stdout and result["best_arch"] in done.stdout


def test_resume_a_cut_journal_gives_the_same_trajectory(finished_run, tmp_path):
    out, _ = finished_run
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (out / "journal.jsonl").read_text().splitlines(keepends=True)
    (cut / "journal.jsonl").write_text("".join(lines[:13]) + '{"i": 12, "ar')
    done = nasflow("search", "--resume", cut)
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr and "corrupted" in done.stderr and "12 queries kept" in done.stderr
    assert rows(cut / "trajectory.csv") and [r["arch"] for r in rows(cut / "trajectory.csv")] == [
        r["arch"] for r in rows(out / "trajectory.csv")
    ]
    assert "18 from the journal" not in done.stdout and "12 from the journal" in done.stdout


def test_search_with_a_predictor(nb201_csv, tmp_path):
    done = nasflow("search", "--searcher", "random", "--predictor", "scratch", "--budget", 16, "--pool", 30,
                   "--benchmark", nb201_csv, "--out", tmp_path / "p")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "p" / "result.json").read_text())
    assert result["queries"] == 16 and result["config"]["predictor"] == "scratch"
    # the predictor ranked real pools: after the warm-up its picks come from 30-cell pools, not single samples
    assert result["config"]["pool"] == 30 and result["overhead_per_query_s"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", 0], "budget must be an integer >= 1"),
        (["--pool", 2, "--batch", 4], "pool (2) must be at least the batch (4)"),
        (["--searcher", "hillclimb"], "unknown searcher 'hillclimb'"),
        (["--predictor", "fgpp"], "unknown predictor 'fgpp'"),
        (["--space", "nb999"], "unknown search space 'nb999'"),
    ],
)
def test_bad_search_input_is_one_line_and_exit_2(nb201_csv, tmp_path, args, message):
    done = nasflow("search", "--benchmark", nb201_csv, "--out", tmp_path / "r", *args)
    assert done.returncode == 2 and done.stderr.startswith("nasflow: error:") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", 5], "was made with seed=2, not 5"),
        (["--space", "nb101"], "was made with space='nb201', not 'nb101'"),
        (["--searcher", "tpe"], "was made with searcher='evolution', not 'tpe'"),
    ],
)
def test_resume_with_other_settings_is_refused(finished_run, args, message):
    out, _ = finished_run
    done = nasflow("search", "--resume", out, *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_reusing_a_run_dir_or_resuming_nothing(finished_run, nb201_csv, tmp_path):
    out, _ = finished_run
    again = nasflow("search", "--benchmark", nb201_csv, "--out", out)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    nothing = nasflow("search", "--resume", tmp_path / "none")
    assert nothing.returncode == 2 and "no journal at" in nothing.stderr


def test_compare_writes_csv_png_and_a_table(nb201_csv, tmp_path):
    done = nasflow("compare", "--searchers", "random,evolution", "--predictor", "none", "--seeds", 2, "--budget", 15,
                   "--benchmark", nb201_csv, "--jobs", 1, "--out", tmp_path / "c")
    assert done.returncode == 0, done.stderr
    curves = rows(tmp_path / "c" / "curves.csv")
    assert len(curves) == 2 * 15 and {r["runs"] for r in curves} == {"2"}
    assert (tmp_path / "c" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = rows(tmp_path / "c" / "summary.csv")
    assert [(r["searcher"], r["predictor"]) for r in summary] == [("random", "none"), ("evolution", "none")]
    last = [float(r["mean_test"]) for r in curves if r["queries"] == "15"]
    assert [float(r["mean_final_test"]) for r in summary] == pytest.approx(last, abs=1e-3)
    assert "random" in done.stdout and "evolution" in done.stdout and "found" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [(["--searchers", "random,nope"], "unknown searcher 'nope'"), (["--seeds", 0], "--seeds must be an integer >= 1")],
)
def test_bad_compare_input(nb201_csv, tmp_path, args, message):
    done = nasflow("compare", "--benchmark", nb201_csv, "--out", tmp_path / "c", "--predictor", "none", *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_paired_rows_pair_runs_by_seed_and_skip_unpaired_seeds():
    from nasflow.experiments.compare import format_paired, paired_rows

    def run(predictor, seed, curve):
        return {"searcher": "evolution", "predictor": predictor, "seed": seed, "best_valid": curve}

    records = [run("scratch", 0, [90.0, 91.0]), run("fgp", 0, [90.0, 91.5]),
               run("scratch", 1, [89.0, 91.0]), run("fgp", 1, [89.0, 90.0]),
               run("fgp", 2, [95.0, 95.0])]  # no scratch partner: must not count
    rows = paired_rows(records, ["scratch", "fgp"])
    assert [(r["predictor"], r["minus"], r["queries"], r["seeds"]) for r in rows] == [("fgp", "scratch", 1, 2), ("fgp", "scratch", 2, 2)]
    last = rows[1]
    assert last["mean_diff_valid"] == pytest.approx(-0.25)
    assert last["se_diff_valid"] == pytest.approx(0.75)  # std of (+0.5, -1.0) over sqrt(2)
    assert (last["wins"], last["ties"], last["losses"]) == (1, 0, 1)
    assert (rows[0]["wins"], rows[0]["ties"], rows[0]["losses"]) == (0, 2, 0)
    assert "fgp-scratch" in format_paired(rows) and "n=2" in format_paired(rows)
    assert paired_rows(records, ["fgp"]) == []


def test_a_table_without_test_accuracies_is_compared_on_valid(tmp_path):
    """NB-101's tables give validation accuracy only: the table, anytime lines and plot show valid, not NaN."""
    from nasflow.experiments.compare import format_anytime, format_table, merit, plot, summary_rows

    def run(searcher, seed, valid):
        return {"searcher": searcher, "predictor": "none", "seed": seed, "best_valid": valid,
                "best_test": [None] * len(valid), "queries_to_optimum": None, "overhead_per_query_s": 0.0,
                "optimum": {"valid": 95.0}}

    records = [run("random", 0, [90.0, 91.0, 92.0]), run("random", 1, [89.0, 93.0, 93.0]),
               run("evolution", 0, [90.0, 94.0, 95.0])]
    assert merit(records) == "valid"
    rows = summary_rows(records)
    assert rows[0]["mean_final_valid"] == pytest.approx(92.5) and rows[0]["se_final_valid"] == pytest.approx(0.5)
    table = format_table(rows, merit(records))
    assert "final valid" in table and "92.500 +- 0.500" in table and "nan" not in table
    anytime = format_anytime(records).splitlines()
    assert anytime[0].startswith("anytime: valid") and "n=3" in anytime[1]
    assert anytime[2].split()[:2] == ["random", "none"] and anytime[2].split()[-1] == "92.500+-0.500"
    plot(records, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    records[0]["best_test"] = [88.0, 89.0, 90.0]  # one run with test accuracies: the table has them
    assert merit(records) == "test"
