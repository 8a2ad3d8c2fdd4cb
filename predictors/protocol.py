"""The field's predictor protocol (TA-GATES / FlowerFormer / FGP on NAS-Bench-201).

Cells in official index order are permuted by a seed (seed 21 keeps the identity order,
as the reference code does; others use NumPy's legacy ``permutation``). The first
``pool`` cells of the permutation are the training pool: the predictor trains on its
first ``int(ratio * pool)`` cells (78 at 1% of 7,813), validates on the next ``n_val``
cells after the pool, and is tested on all the rest. Each run is one (permutation,
model seed) pair; pre-training sees no labels, so one pre-training per (encoder, seed)
serves every permutation and ratio.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from nasflow.errors import DataError
from nasflow.metrics import kendall_tau, precision_at_k, spearman_rho

from .committee import Committee

FIELD_SEEDS = (21, 2021, 202121)
N_VAL = 40


def field_permutation(n: int, seed: int) -> np.ndarray:
    if seed == 21:
        return np.arange(n)
    return np.random.RandomState(seed).permutation(n)


def field_split(n: int, perm_seed: int, ratio: float, pool: int, n_val: int = N_VAL):
    """(train, validation, test) index arrays into the cells in official order."""
    if not 0 < ratio <= 1:
        raise DataError(f"train ratio must be in (0, 1], got {ratio}")
    if pool + n_val >= n:
        raise DataError(f"a pool of {pool} plus {n_val} validation cells leaves no test cells among {n}")
    n_train = int(ratio * pool)
    if n_train < 2:
        raise DataError(f"train ratio {ratio} of a {pool}-cell pool is {n_train} cells; need at least 2")
    perm = field_permutation(n, perm_seed)
    return perm[:n_train], perm[pool : pool + n_val], perm[pool + n_val :]


@dataclass
class ProtocolRun:
    encoder: str
    pretrain: str
    ratio: float
    perm_seed: int
    seed: int
    n_train: int
    tau: float
    rho: float
    p1: float
    p5: float
    fit_seconds: float
    pretrain_seconds: float
    # > 1: the standardised scores of that many predictors (seeds seed, seed+1, ...) averaged
    members: int = 1
    # what the members' seeds vary: "pretraining" (and fine-tuning), or only "finetuning" over one pre-training;
    # a single model is recorded as "pretraining"
    ensemble_over: str = "pretraining"
    # the Predictor options the run was made with beyond the protocol's own ("k=v, ..."; "" for the defaults), so
    # runs of different settings are told apart when saved runs are merged
    options: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def run_protocol(
    space,
    archs: Sequence,
    values: np.ndarray,
    encoders: Sequence[str] = ("gin", "gatedgcn"),
    pretrains: Sequence[str] = ("none", "fgp"),
    ratios: Sequence[float] = (0.01, 0.05, 0.1),
    seeds: Sequence[int] = FIELD_SEEDS,
    perm_seeds: Sequence[int] = FIELD_SEEDS,
    pool: Optional[int] = None,
    options: Optional[dict] = None,
    progress: bool = False,
    on_run: Optional[Callable[[ProtocolRun], None]] = None,
    ensemble: int = 1,
    ensemble_over: str = "pretraining",
) -> list[ProtocolRun]:
    """Every (encoder, pre-training, seed, permutation, ratio) run of the protocol.

    ``archs`` are all cells of the benchmark in official order and ``values`` their
    labels (the ``*_valid`` column). ``options`` go to every ``Predictor``.
    ``ensemble=K > 1`` also scores an ensemble of K predictors with seeds seed, ..., seed+K-1,
    each pre-trained on its own, and records it next to the single model (the first member).
    With ``ensemble_over="finetuning"`` the members share the first one's pre-training and
    differ in their fine-tuning seed only (K fits, one pre-training).
    """
    if ensemble < 1:
        raise DataError(f"an ensemble needs at least 1 member, got {ensemble}")
    if ensemble_over not in ENSEMBLE_OVER:
        raise DataError(f"ensemble_over must be one of {', '.join(ENSEMBLE_OVER)}, got {ensemble_over!r}")

    label = options_label(options or {})
    values = np.asarray(values, dtype=np.float64)
    if len(archs) != values.size:
        raise DataError(f"{len(archs)} cells but {values.size} labels")
    pool = pool or space.protocol_pool
    if pool is None:
        raise DataError(f"no standard pool size for space {space.name!r}; pass pool=")
    splits = {(p, r): field_split(len(archs), p, r, pool) for p in perm_seeds for r in ratios}
    runs = []
    for encoder in encoders:
        for seed in seeds:
            for mode in pretrains:
                members = [_member(space, encoder, mode, seed, m, ensemble_over, options or {}) for m in range(ensemble)]
                pretrain_seconds = []
                for member in members:
                    start = time.perf_counter()
                    member.pretrain(progress=progress)
                    pretrain_seconds.append(0.0 if member.pretrain_from_cache else time.perf_counter() - start)
                for perm_seed in perm_seeds:
                    for ratio in ratios:
                        train, val, test = splits[perm_seed, ratio]
                        fit_seconds = []
                        for member in members:
                            start = time.perf_counter()
                            member.fit([archs[i] for i in train], values[train], [archs[i] for i in val], values[val])
                            fit_seconds.append(time.perf_counter() - start)
                        test_archs, true = [archs[i] for i in test], values[test]
                        scored = [(members[0].predict(test_archs), 1, fit_seconds[0], pretrain_seconds[0])]
                        if ensemble > 1:
                            committee = Committee(members, f"{ensemble} x {mode}")
                            scored.append((committee.predict(test_archs), ensemble, sum(fit_seconds), sum(pretrain_seconds)))
                        for pred, size, fit_s, pretrain_s in scored:
                            run = ProtocolRun(
                                encoder, mode, ratio, perm_seed, seed, len(train),
                                kendall_tau(pred, true), spearman_rho(pred, true),
                                precision_at_k(pred, true, 0.01), precision_at_k(pred, true, 0.05),
                                fit_s, pretrain_s, size, ensemble_over if size > 1 else "pretraining", label,
                            )  # fmt: skip
                            runs.append(run)
                            if on_run is not None:
                                on_run(run)
    return runs


ENSEMBLE_OVER = ("pretraining", "finetuning")


def options_label(options: dict) -> str:
    """Predictor options as one canonical line: equal options give equal labels."""
    return ", ".join(f"{k}={options[k]!r}" for k in sorted(options))


def _member(space, encoder, mode, seed, m, ensemble_over, options):
    """Member ``m`` of a run's ensemble; member 0 is the run's single model."""
    from .predictor import Predictor

    if ensemble_over == "pretraining":
        return Predictor(space, encoder=encoder, pretrain=mode, seed=seed + m, **options)
    return Predictor(space, encoder=encoder, pretrain=mode, seed=seed, finetune_seed=None if m == 0 else seed + m, **options)


def summarise(runs: Sequence[ProtocolRun]) -> list[dict]:
    """Mean and standard deviation of each metric per (ratio, encoder, pre-training, ensemble size, options)."""
    groups: dict[tuple, list[ProtocolRun]] = {}
    for r in runs:
        groups.setdefault((r.ratio, r.encoder, r.pretrain, r.members, r.ensemble_over, r.options), []).append(r)
    rows = []
    for (ratio, encoder, mode, members, over, options), rs in sorted(groups.items()):
        row = {"ratio": ratio, "encoder": encoder, "pretrain": mode, "members": members, "ensemble_over": over,
               "options": options, "runs": len(rs), "n_train": rs[0].n_train}  # fmt: skip
        for metric in ("tau", "rho", "p1", "p5", "fit_seconds"):
            xs = np.array([getattr(r, metric) for r in rs])
            row[metric], row[metric + "_std"] = float(xs.mean()), float(xs.std())
        rows.append(row)
    return rows


def paired(runs: Sequence[ProtocolRun], metrics: Sequence[str] = ("tau", "p1", "p5")) -> list[dict]:
    """FGP against no pre-training, run by run: the runs of one (ratio, encoder, ensemble, options) that share a
    permutation and seed differ only in the pre-training, so their differences cancel the split's luck (the
    permutation that puts few of the best cells in the pool sinks both). Per metric: mean difference, its
    standard error over the pairs, and how many pairs FGP wins and loses."""
    by_key: dict[tuple, dict[str, ProtocolRun]] = {}
    for r in runs:
        if r.pretrain in ("fgp", "none"):
            key = (r.ratio, r.encoder, r.members, r.ensemble_over, r.options, r.perm_seed, r.seed)
            by_key.setdefault(key, {})[r.pretrain] = r
    groups: dict[tuple, list[tuple[ProtocolRun, ProtocolRun]]] = {}
    for key, pair in sorted(by_key.items()):
        if len(pair) == 2:
            groups.setdefault(key[:5], []).append((pair["fgp"], pair["none"]))
    rows = []
    for (ratio, encoder, members, over, options), pairs in groups.items():
        row = {"ratio": ratio, "encoder": encoder, "members": members, "ensemble_over": over, "options": options,
               "pairs": len(pairs), "perms": len({f.perm_seed for f, _ in pairs}), "seeds": len({f.seed for f, _ in pairs})}
        for m in metrics:
            d = np.array([getattr(f, m) - getattr(n, m) for f, n in pairs])
            se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            row[m] = {"mean": float(d.mean()), "se": se, "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}
        rows.append(row)
    return rows


def format_paired(rows: Sequence[dict], metrics: Sequence[str] = ("tau", "p1", "p5")) -> str:
    """A Markdown table of :func:`paired` rows: FGP minus none, mean ± s.e. (wins/losses)."""
    names = {"tau": "Kendall tau", "rho": "Spearman rho", "p1": "P@1%", "p5": "P@5%"}
    lines = ["| ratio | encoder | pairs (perms x seeds) | " + " | ".join(f"{names[m]}: FGP - none" for m in metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for r in rows:
        name = r["encoder"] + (f", ensemble of {r['members']}" if r["members"] > 1 else "")
        name += f" [{r['options']}]" if r["options"] else ""
        cells = [f"{r['ratio']:g}", name, f"{r['pairs']} ({r['perms']} x {r['seeds']})"]
        cells += [f"{r[m]['mean']:+.3f} ± {r[m]['se']:.3f} ({r[m]['wins']}/{r[m]['losses']})" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(rows: Sequence[dict]) -> str:
    """A Markdown table of :func:`summarise` rows."""
    lines = [
        "| ratio | n train | encoder | pre-training | runs | Kendall tau | Spearman rho | P@1% | P@5% | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mode = r["pretrain"]
        if r.get("members", 1) > 1:
            mode += f", ensemble of {r['members']}" + (" fine-tunings" if r["ensemble_over"] == "finetuning" else "")
        if r.get("options"):
            mode += f" [{r['options']}]"
        cells = [f"{r['ratio']:g}", str(r["n_train"]), r["encoder"], mode, str(r["runs"])]
        cells += [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" for m in ("tau", "rho", "p1", "p5")]
        cells.append(f"{r['fit_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
