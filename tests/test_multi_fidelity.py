"""Multi-fidelity search: fidelities of a table, the schedules' rules, cost accounting, journal and resume, bad input.

Tables are small synthetic NB-201 exports written here (a 200-epoch table and its 12-epoch companion), so
nothing needs the shared benchmarks; one test checks the real pair where it is present.
"""
import csv
import json

import numpy as np
import pytest

from clirun import run_cli
from nasflow.core import Evaluation, FidelityError
from nasflow.journal import query_record, record_evaluation
from nasflow.schedulers import ASHA, Hyperband, Schedule, ScheduleError, SuccessiveHalving
from nasflow.spaces import get_space

CELLS = 300


def write_tables(folder, cells=CELLS, archs=None):
    """nb201_cifar.csv (200 epochs) and nb201_12epoch.csv beside it: the low fidelity is the high one, noisier
    and 10 points lower, so the two rank cells alike but not identically. ``archs``: the cells (default: the
    first ``cells`` of the space)."""
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = space.enumerate()[:cells] if archs is None else archs
    cells = len(archs)
    high = 80 + 12 * rng.random(cells)
    low = high - 10 + rng.normal(0, 1.5, cells)
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in (("nb201_cifar.csv", high), ("nb201_12epoch.csv", low)):
        with open(folder / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arch", "cifar10_valid", "cifar10_test"])
            for a, v in zip(archs, values):
                w.writerow([space.format(a), f"{v:.4f}", f"{v + 2:.4f}"])
    return folder / "nb201_cifar.csv"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_tables(tmp_path_factory.mktemp("mf"))


@pytest.fixture(scope="module")
def oracle(table):
    return get_space("nb201").open_oracle(str(table))


@pytest.fixture(scope="module")
def ball_table(tmp_path_factory):
    """A table of 400 cells within a few edits of one, so each has neighbours in it (local search, scouts)."""
    space = get_space("nb201")
    ball = [space.enumerate()[0]]
    for arch in ball:
        ball += [b for b in space.neighbours(arch) if b not in ball][: 400 - len(ball)]
        if len(ball) == 400:
            break
    return write_tables(tmp_path_factory.mktemp("ball"), archs=ball)


@pytest.fixture(scope="module")
def ball_oracle(ball_table):
    return get_space("nb201").open_oracle(str(ball_table))


def test_a_table_knows_its_fidelities_and_answers_at_each(oracle):
    assert oracle.fidelities == (12, 200)
    arch = oracle.archs()[0]
    full = oracle.query(arch)
    assert full.fidelity is None  # a query without a fidelity is the one of before: same evaluation
    assert oracle.query(arch, 200) == Evaluation(full.valid, full.test, fidelity=200)
    low = oracle.query(arch, 12)
    assert low.fidelity == 12 and low.valid != full.valid
    with pytest.raises(FidelityError, match="no accuracies at 36 epochs; it has 12, 200"):
        oracle.query(arch, 36)


def test_a_table_without_its_companion_has_its_full_fidelity_only(tmp_path):
    table = write_tables(tmp_path, cells=5)
    (tmp_path / "nb201_12epoch.csv").unlink()
    oracle = get_space("nb201").open_oracle(str(table))
    assert oracle.fidelities == (200,)
    with pytest.raises(FidelityError):
        oracle.query(oracle.archs()[0], 12)


def test_the_real_nb201_pair(benchmarks_dir):
    oracle = get_space("nb201").open_oracle(str(benchmarks_dir / "nb201" / "nb201_cifar.csv"))
    arch = oracle.archs()[1]
    assert oracle.fidelities == (12, 200)
    assert oracle.query(arch, 12).valid < oracle.query(arch).valid  # 12 epochs train a cell less far


def test_schedule_text_is_canonical_and_checked():
    assert str(Schedule.parse("sh: max=200, min=12")) == "sh:min=12,max=200,eta=3"
    assert str(Schedule.parse("asha:min=4,max=108,eta=3,n=9")) == "asha:min=4,max=108,eta=3,n=9"
    for text, message in (("sh:min=12,max=200,eta=1", "eta must be at least 2"),
                          ("sh:min=200,max=12", "min \\(200\\) is above its max"),
                          ("bohb:min=1,max=2", "unknown schedule"), ("sh:min=12,max=200,speed=3", "bad schedule option"),
                          ("sh:max=200", "needs min"), ("sh:min=x,max=200", "must be an integer")):
        with pytest.raises(ScheduleError, match=message):
            Schedule.parse(text)


def test_rungs_are_the_tables_fidelities_or_geometric():
    schedule = Schedule.parse("sh:min=4,max=108,eta=3")
    assert schedule.rungs(None) == (4, 12, 36, 108)  # an oracle that trains any epoch count
    assert schedule.rungs((4, 12, 36, 108)) == (4, 12, 36, 108)
    assert Schedule.parse("sh:min=12,max=108").rungs((4, 12, 36, 108)) == (12, 36, 108)
    assert Schedule.parse("sh:min=5,max=20,eta=3").rungs(None) == (5, 15, 20)
    with pytest.raises(ScheduleError, match="no accuracies at 36 epochs \\(it has 12, 200\\)"):
        Schedule.parse("sh:min=36,max=200").rungs((12, 200))


def play(scheduler, value, jobs):
    """Run ``jobs`` jobs of ``scheduler`` with cells named by number and valid = value(cell); the jobs."""
    done, fresh = [], iter(range(10_000))
    for _ in range(jobs):
        job = scheduler.next_job()
        arch = job.arch if job.arch is not None else next(fresh)
        if job.arch is None:
            scheduler.started(arch)
        scheduler.report(arch, job.rung, value(arch))
        done.append((arch, job.rung, job.arch is None))
    return done


def test_successive_halving_promotes_the_best_third_of_each_rung_then_starts_a_bracket():
    jobs = play(SuccessiveHalving((1, 3, 9), eta=3, n=9), lambda a: float(a % 5), 14)
    assert [(a, r) for a, r, _ in jobs[:9]] == [(i, 0) for i in range(9)]
    # the top 3 of rung 0 by value (ties: first reported), then the best of those
    assert [(a, r) for a, r, _ in jobs[9:13]] == [(4, 1), (3, 1), (8, 1), (4, 2)]
    assert jobs[13] == (9, 0, True)  # the next bracket


def test_hyperband_brackets_start_at_each_rung_with_li_et_al_sizes():
    jobs = play(Hyperband((12, 200), eta=3, n=3), lambda a: float(a), 9)
    # s=1: 3 cells at 12 epochs, the best one to 200; s=0: 2 new cells at 200; then s=1 again
    assert [(a, r, new) for a, r, new in jobs] == [
        (0, 0, True), (1, 0, True), (2, 0, True), (2, 1, False), (3, 1, True), (4, 1, True),
        (5, 0, True), (6, 0, True), (7, 0, True)]


def test_asha_promotes_as_soon_as_a_cell_is_in_the_top_third_of_its_rung():
    scheduler = ASHA((12, 200), eta=3, n=3)
    jobs = play(scheduler, lambda a: {0: 5.0, 1: 9.0, 2: 1.0, 3: 7.0, 4: 8.0, 5: 0.0}.get(a, 0.0), 8)
    # after 3 cells the best (1) is promoted; after 6 the top 2 are 1 and 4: 4 goes next
    assert [(a, r) for a, r, _ in jobs] == [(0, 0), (1, 0), (2, 0), (1, 1), (3, 0), (4, 0), (5, 0), (4, 1)]
    from nasflow.schedulers import Job

    assert scheduler.next_job(pending=[Job(6, 0)]).arch is None  # a free worker never waits


def test_asha_local_promotes_the_best_full_cells_neighbours_from_a_wider_window():
    assert str(Schedule.parse("asha:min=12,max=200,eta=3,model=ridge,local=2")) == "asha:min=12,max=200,eta=3,local=2,model=ridge"
    assert str(Schedule.parse("asha:min=12,max=200,local=0")) == "asha:min=12,max=200,eta=3"  # 0: none, as before
    with pytest.raises(ScheduleError, match="local must be 0"):
        Schedule.parse("asha:min=12,max=200,local=-1")
    valid = {0: 9.0, 1: 5.0, 2: 4.0, 3: 6.0, 4: 3.0, 5: 2.0, 6: 1.0}
    plain = play(Schedule.parse("asha:min=12,max=200,eta=3").scheduler((12, 200)), valid.get, 9)
    local = Schedule.parse("asha:min=12,max=200,eta=3,local=2").scheduler((12, 200))
    local.neighbours = lambda arch: {0: (2, 6)}.get(arch, ())  # cell 0's neighbours (one edit) are 2 and 6
    jobs = play(local, valid.get, 9)
    assert [(a, r) for a, r, _ in plain] == [(0, 0), (1, 0), (2, 0), (0, 1), (3, 0), (4, 0), (5, 0), (3, 1), (6, 0)]
    # the same until 6 cells are screened; then the best full-fidelity cell is 0 and the window is the top
    # 2 * (6 // 3) = 4 at 12 epochs (0, 3, 1, 2): its neighbour 2 is promoted where plain ASHA starts a new cell;
    # its neighbour 6, last at 12 epochs, is not (before that the window of 2 held no neighbour)
    assert [(a, r) for a, r, _ in jobs] == [(0, 0), (1, 0), (2, 0), (0, 1), (3, 0), (4, 0), (5, 0), (3, 1), (2, 1)]
    with pytest.raises(ValueError, match="needs the space's neighbours"):
        play(Schedule.parse("asha:min=12,max=200,eta=3,local=2").scheduler((12, 200)), valid.get, 9)


def test_asha_scout_screens_the_best_full_cells_neighbours_before_new_cells():
    assert str(Schedule.parse("asha:min=12,max=200,eta=3,model=ridge,scout=1,local=2")) == \
        "asha:min=12,max=200,eta=3,local=2,scout=1,model=ridge"
    assert str(Schedule.parse("asha:min=12,max=200,scout=0")) == "asha:min=12,max=200,eta=3"  # 0: off, as before
    for text, message in (("asha:min=12,max=200,scout=2", "scout must be 0 .off. or 1"),
                          ("sh:min=12,max=200,scout=1", "scout=1 is a rule of asha, not of sh")):
        with pytest.raises(ScheduleError, match=message):
            Schedule.parse(text)
    valid = {0: 9.0, 1: 5.0, 2: 4.0, 100: 3.0, 101: 8.0}

    def scouting():
        scheduler = Schedule.parse("asha:min=12,max=200,eta=3,scout=1").scheduler((12, 200))
        scheduler.neighbours = lambda arch: {0: (100, 1, 101)}.get(arch, ())  # cell 0's neighbours (one edit)
        return scheduler

    scheduler, fresh, jobs = scouting(), iter(range(10_000)), []
    for _ in range(8):
        job = scheduler.next_job()
        arch = job.arch if job.arch is not None else next(fresh)
        scheduler.report(arch, job.rung, valid.get(arch, 1.0))
        jobs.append((arch, job.rung, job.scout))
    # 0 is promoted, so its neighbours not screened yet (100, 101; 1 was) are screened, as scouts, before any new
    # cell; then new cells again, and 101, second at 12 epochs, is promoted in its turn
    assert jobs == [(0, 0, False), (1, 0, False), (2, 0, False), (0, 1, False), (100, 0, True), (101, 0, True),
                    (3, 0, False), (101, 1, False)]
    from nasflow.schedulers import Job

    scheduler = scouting()
    for arch, rung, _ in jobs[:4]:
        scheduler.report(arch, rung, valid[arch])
    assert scheduler.next_job(pending=[Job(100, 0, True)]) == Job(101, 0, True)  # one in flight is not given again
    assert scheduler.next_job(pending=[Job(100, 0, True), Job(101, 0, True)]) == Job(None, 0)
    with pytest.raises(ValueError, match="needs the space's neighbours"):
        play(Schedule.parse("asha:min=12,max=200,eta=3,scout=1").scheduler((12, 200)), lambda a: valid.get(a, 1.0), 5)


def test_asha_around_centres_scouting_and_local_search_on_the_k_best_full_cells():
    assert str(Schedule.parse("asha:min=12,max=200,around=2,eta=3,model=ridge,scout=1,local=2")) == \
        "asha:min=12,max=200,eta=3,local=2,scout=1,around=2,model=ridge"
    assert str(Schedule.parse("asha:min=12,max=200,local=2,around=1")) == "asha:min=12,max=200,eta=3,local=2"
    for text, message in (("asha:min=12,max=200,scout=1,around=0", "around must be at least 1"),
                          ("asha:min=12,max=200,around=2", "around=2 centres local=W and scout=1; give one")):
        with pytest.raises(ScheduleError, match=message):
            Schedule.parse(text)

    def scouts(around):  # eta=27: no promotion is due among so few cells, so every job is a scout or new
        scheduler = Schedule.parse(f"asha:min=12,max=200,eta=27,scout=1,around={around}").scheduler((12, 200))
        scheduler.neighbours = lambda arch: {0: (10, 11), 1: (11, 12, 13)}.get(arch, ())
        for arch, rung, valid in ((0, 0, 9.0), (1, 0, 8.0), (0, 1, 90.0), (1, 1, 80.0)):
            scheduler.report(arch, rung, valid)
        started = []
        while (job := scheduler.next_job()).arch is not None:
            started.append((job.arch, job.scout))
            scheduler.report(job.arch, job.rung, 1.0)
        return started

    # the best cell's neighbours first, then the second best's not screened yet (11 is both's)
    assert scouts(2) == [(10, True), (11, True), (12, True), (13, True)]
    assert scouts(1) == [(10, True), (11, True)]  # the best alone, as scout=1 without around
    assert scouts(3) == scouts(2)  # with two full-fidelity cells, around=3 centres on those two

    def local(around):  # 6 cells at 12 epochs: ASHA's top 2 (0, 1) are promoted; local=2's window is the top 4
        scheduler = Schedule.parse(f"asha:min=12,max=200,eta=3,local=2,around={around}").scheduler((12, 200))
        scheduler.neighbours = lambda arch: {0: (10,), 1: (3,)}.get(arch, ())
        for arch, valid in enumerate((9.0, 8.0, 7.0, 6.0, 5.0, 4.0)):
            scheduler.report(arch, 0, valid)
        scheduler.report(0, 1, 90.0)
        scheduler.report(1, 1, 80.0)
        return scheduler.next_job()

    assert local(1) == (None, 0, False)  # the best's neighbour 10 is not screened: nothing to promote
    assert local(2) == (3, 1, False)  # 3, the second best's neighbour, is in the window


def search(table, schedule, budget_epochs=3000, seed=0):
    from nasflow.experiments.runs import run_search

    return run_search({"space": "nb201", "searcher": "evolution", "benchmark": str(table), "seed": seed,
                       "schedule": schedule, "budget_epochs": budget_epochs})


@pytest.mark.parametrize("kind", ["sh", "hyperband", "asha"])
def test_a_promotion_costs_only_the_extra_epochs_and_the_budget_holds(table, kind):
    result = search(table, f"{kind}:min=12,max=200,eta=3")
    promoted = {}
    for q, f, e in zip(result.trajectory, result.fidelities, result.epochs):
        assert e == (f - 12 if f == 200 and q.arch in promoted else f)
        promoted[q.arch] = f
    total = result.total_epochs()[-1]
    assert 3000 - 188 < total <= 3000  # the run stops at the first job that does not fit
    assert result.summary()["epochs"] == total
    assert set(result.fidelities) == {12, 200}


def test_the_best_cell_is_the_best_at_the_highest_fidelity_reached(table, oracle):
    result = search(table, "sh:min=12,max=200,eta=3")
    trained = {}
    for q, f in zip(result.trajectory, result.fidelities):
        trained.setdefault(q.arch, {})[f] = q.valid
        top = max(max(v) for v in trained.values())
        at_top = {a: v[top] for a, v in trained.items() if top in v}  # dicts keep order: ties go to the first
        expected = max(at_top, key=lambda a: at_top[a])
        assert (q.best_arch, q.best_valid) == (expected, at_top[expected])
        assert q.best_test == oracle.query(get_space("nb201").parse(q.best_arch)).test  # at full fidelity


def test_searchers_without_a_schedule_are_unchanged(table, tmp_path):
    """A run without --schedule journals the lines of before: no fidelity, no epochs."""
    from nasflow.experiments.runs import run_search

    run_search({"space": "nb201", "searcher": "evolution", "benchmark": str(table), "budget": 12},
               run_dir=tmp_path / "plain")
    lines = (tmp_path / "plain" / "journal.jsonl").read_text().splitlines()
    assert all(set(json.loads(line)) == {"i", "arch", "valid", "test", "cost", "extra", "seconds"} for line in lines[1:])


def test_old_journal_lines_are_at_full_fidelity():
    record = query_record(0, "x", Evaluation(90.0, 93.0), 0.1)
    assert "fidelity" not in record and record_evaluation(record).fidelity is None
    record = query_record(0, "x", Evaluation(80.0, 83.0, fidelity=12), 0.1, epochs=12)
    assert (record["fidelity"], record["epochs"], record_evaluation(record).fidelity) == (12, 12, 12)


class CountingOracle:
    """Counts the queries that reach the table."""

    def __init__(self, oracle):
        self.oracle, self.calls = oracle, 0
        self.fidelities, self.continues, self.best, self.speed_summary = oracle.fidelities, True, oracle.best, None
        self.for_schedule = None

    def query(self, arch, fidelity=None):
        self.calls += 1
        return self.oracle.query(arch, fidelity)


SCHEDULES = {"sh": "sh:min=12,max=200,eta=3", "asha": "asha:min=12,max=200,eta=3",
             "asha-local": "asha:min=12,max=200,eta=3,local=2", "asha-scout": "asha:min=12,max=200,eta=3,local=2,scout=1",
             "asha-around": "asha:min=12,max=200,eta=3,local=2,scout=1,around=2"}


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_a_killed_scheduled_run_resumes_without_repeating_an_evaluation(ball_oracle, tmp_path, kind):
    from nasflow.schedulers import Schedule
    from nasflow.scheduled_loop import scheduled_search
    from nasflow.searchers import get_searcher

    space = get_space("nb201")
    from nasflow.restricted import restrict_to_table

    oracle = ball_oracle
    searched = restrict_to_table(space, oracle)
    schedule = Schedule.parse(SCHEDULES[kind])
    whole = scheduled_search(searched, oracle, get_searcher("evolution", searched, seed=3), schedule, budget_epochs=2500, seed=3)
    first = scheduled_search(searched, oracle, get_searcher("evolution", searched, seed=3), schedule,
                             budget_epochs=1200, seed=3, run_dir=tmp_path / "r")
    counting = CountingOracle(oracle)
    resumed = scheduled_search(searched, counting, get_searcher("evolution", searched, seed=3), schedule,
                               budget_epochs=2500, seed=3, run_dir=tmp_path / "r", resume=True)
    assert resumed.resumed_queries == first.queries
    assert counting.calls == resumed.queries - first.queries  # only the evaluations past the journal reach the table
    assert [(q.arch, q.valid) for q in resumed.trajectory] == [(q.arch, q.valid) for q in whole.trajectory]
    assert resumed.fidelities == whole.fidelities and resumed.epochs == whole.epochs
    journal = [json.loads(line) for line in (tmp_path / "r" / "journal.jsonl").read_text().splitlines()[1:]]
    assert [r["fidelity"] for r in journal] == whole.fidelities
    scouts = [r for r in journal if r.get("scout")]
    assert bool(scouts) == (kind in ("asha-scout", "asha-around"))
    # the schedule's own screens are journaled before and after the kill (the resume replayed them as scouts)
    assert not scouts or (scouts[0]["i"] < first.queries < scouts[-1]["i"])


def test_asha_local_search_promotes_neighbours_of_the_best_full_fidelity_cell(ball_oracle):
    from nasflow.restricted import restrict_to_table
    from nasflow.scheduled_loop import scheduled_search
    from nasflow.searchers import get_searcher

    oracle = ball_oracle
    searched = restrict_to_table(get_space("nb201"), oracle)

    def run(text):
        return scheduled_search(searched, oracle, get_searcher("evolution", searched, seed=1), Schedule.parse(text),
                                budget_epochs=4000, seed=1)

    plain, local = run("asha:min=12,max=200,eta=9"), run("asha:min=12,max=200,eta=9,local=3")
    local_jobs = 0
    best = None  # the best full-fidelity cell before each job
    for q, f in zip(local.trajectory, local.fidelities):
        arch = searched.parse(q.arch)
        if f == 200:
            local_jobs += best is not None and arch in searched.neighbours(best[0])
            if best is None or q.valid > best[1]:
                best = (arch, q.valid)
    plain_full = sum(f == 200 for f in plain.fidelities)
    assert local_jobs >= 1 and sum(f == 200 for f in local.fidelities) > plain_full
    assert local.total_epochs()[-1] <= 4000


def test_scouted_cells_are_never_told_to_the_searcher_nor_proposed_by_it(ball_oracle, tmp_path):
    from nasflow.restricted import restrict_to_table
    from nasflow.scheduled_loop import scheduled_search
    from nasflow.searchers import get_searcher

    space, oracle = get_space("nb201"), ball_oracle
    searched = restrict_to_table(space, oracle)

    def run(text):
        searcher = get_searcher("evolution", searched, seed=2)
        return searcher, scheduled_search(searched, oracle, searcher, Schedule.parse(text), budget_epochs=5000,
                                          seed=2, run_dir=tmp_path / "run")

    scout, scout_run = run("asha:min=12,max=200,eta=9,scout=1")
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl")
               .read_text().splitlines()[1:]]
    scouted = [r["arch"] for r in records if r.get("scout")]
    screened = [r["arch"] for r in records if r["fidelity"] == 12]
    assert len(scouted) >= 5 and len(set(screened)) == len(screened)  # scouts ran, and no cell was screened twice
    assert scout_run.summary()["scouted"] == len(scouted)
    # the searcher was told the cells it proposed, in order, and no other
    assert [space.format(a) for a in scout.history] == [a for a in screened if a not in scouted]
    assert scout_run.total_epochs()[-1] <= 5000
    # each scout was a neighbour of the best full-fidelity cell when it was started
    best = None
    for r in records:
        if r.get("scout"):
            assert best is not None and searched.parse(r["arch"]) in searched.neighbours(searched.parse(best[0]))
        if r["fidelity"] == 200 and (best is None or r["valid"] > best[1]):
            best = (r["arch"], r["valid"])


def cli(table, tmp_path, *args):
    return run_cli("search", "--benchmark", str(table), "--budget-epochs", "1500", *args, cache=tmp_path / "cache")


def test_the_cli_counts_the_scouted_cells(ball_table, tmp_path):
    out = tmp_path / "run"
    done = cli(ball_table, tmp_path, "--schedule", "asha:min=12,max=200,eta=9,scout=1", "--seed", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    scouted = sum(bool(json.loads(line).get("scout")) for line in (out / "journal.jsonl").read_text().splitlines()[1:])
    assert scouted and f"to full fidelity, {scouted} scouted)" in done.stdout


def test_search_with_a_schedule_through_the_cli_resumes_and_keeps_its_schedule(table, tmp_path):
    out = tmp_path / "run"
    done = cli(table, tmp_path, "--schedule", "asha:min=12,max=200,eta=3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "schedule   asha:min=12,max=200,eta=3 (rungs 12, 200 epochs)" in done.stdout
    header = json.loads((out / "journal.jsonl").read_text().splitlines()[0])
    assert (header["schedule"], header["budget_epochs"]) == ("asha:min=12,max=200,eta=3", 1500)
    more = run_cli("search", "--resume", str(out), "--budget-epochs", "2000", cache=tmp_path / "cache")
    assert more.returncode == 0 and "from the journal" in more.stdout
    rows = list(csv.DictReader(open(out / "trajectory.csv")))
    assert int(rows[-1]["total_epochs"]) <= 2000 and {r["fidelity"] for r in rows} == {"12", "200"}
    other = run_cli("search", "--resume", str(out), "--schedule", "sh:min=12,max=200,eta=3", cache=tmp_path / "cache")
    assert other.returncode == 2 and "schedule='asha:min=12,max=200,eta=3', not 'sh:min=12,max=200,eta=3'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--schedule", "sh:min=12,max=200,eta=1"), "eta must be at least 2"),
    (("--schedule", "sh:min=200,max=12"), "is above its max"),
    (("--schedule", "sh:min=36,max=200"), "no accuracies at 36 epochs"),
    (("--schedule", "sh:min=12,max=200", "--searcher", "local"), "searcher 'local' cannot follow a schedule"),
    (("--schedule", "sh:min=12,max=200", "--batch", "4"), "one cell per step"),
    (("--searcher", "random"), "needs a schedule"),
    (("--schedule", "asha:min=12,max=200", "--storage", "study.db"), "runs on one machine, not on a shared study"),
    (("--schedule", "sh:min=12,max=200,local=2"), "local=2 is a rule of asha, not of sh"),
    (("--schedule", "asha:min=12,max=200,scout=3"), "scout must be 0 (off) or 1"),
    (("--schedule", "asha:min=12,max=200,eta=27,around=2"), "around=2 centres local=W and scout=1"),
    (("--schedule", "asha:min=12,max=200", "--searcher", "nsga2", "--objectives", "valid,-params"),
     "--objectives needs a run without --schedule"),
])
def test_bad_schedules_are_one_line_exit_2_before_any_run(table, tmp_path, args, message):
    out = tmp_path / "bad"
    done = cli(table, tmp_path, *args, "--out", str(out))
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (out / "journal.jsonl").exists()


def test_compare_in_epochs_tabulates_every_schedule(table, tmp_path):
    out = tmp_path / "cmp"
    done = run_cli("compare", "--searchers", "random", "--predictor", "none", "--seeds", "2", "--benchmark", str(table),
                   "--budget", "10", "--schedule", "none", "--schedule", "sh:min=12,max=200,eta=3", "--jobs", "1",
                   "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "E=2,000" in done.stdout and "sh:min=12,max=200,eta=3" in done.stdout
    rows = list(csv.DictReader(open(out / "cost_summary.csv")))
    assert [(r["schedule"], r["runs"]) for r in rows] == [("none", "2"), ("sh:min=12,max=200,eta=3", "2")]
    curves = list(csv.DictReader(open(out / "cost_curves.csv")))
    full = [float(r["mean_test"]) for r in curves if r["schedule"] == "none"]
    assert np.isnan(full[0]) and not np.isnan(full[-1])  # nothing is known before the first full training
    assert (out / "cost_curves.png").stat().st_size > 0


def test_the_nb101_table_knows_its_four_fidelities(benchmarks_dir):
    oracle = get_space("nb101").open_oracle(str(benchmarks_dir / "nb101" / "nb101_1k.jsonl"))
    arch = oracle.archs()[0]
    assert oracle.fidelities == (4, 12, 36, 108)
    values = [oracle.query(arch, e).valid for e in oracle.fidelities]
    assert values[-1] == oracle.query(arch).valid and len(set(values)) == 4


def test_compare_with_an_epoch_budget_needs_a_schedule(table, tmp_path):
    done = run_cli("compare", "--searchers", "random", "--predictor", "none", "--seeds", "1", "--benchmark", str(table),
                   "--budget-epochs", "1000", "--out", str(tmp_path / "cmp"), cache=tmp_path / "cache")
    assert done.returncode == 2 and "add --schedule" in done.stderr and len(done.stderr.strip().splitlines()) == 1
