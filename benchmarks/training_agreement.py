"""Do GPU and CPU trainings agree? Same cells, same seed, the digits recipe, on each device.

    python benchmarks/training_agreement.py --cells 20 --repeat 10 --json agreement.json

Trains --cells uniform NB-201 cells (seed 0) on the CPU and on --device (cuda:0: bf16, CUDA graph),
and the first --repeat of them a second time on that device. For scale it also trains the cells on the CPU
with another seed: how alike two CPU trainings rank the cells is the most any device can agree. Prints the Kendall tau between the CPU's and the
GPU's validation accuracies, and the largest GPU-vs-GPU difference with the same seed.
"""
from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np


def accuracies(space, cells, device: str, cache: str, **options) -> list[dict]:
    from nasflow.training import default_training_oracle

    oracle, _ = default_training_oracle(space, device=device, cache_dir=cache, **options)
    out = []
    for arch in cells:
        ev = oracle.query(arch)
        out.append({"valid": ev.valid, "test": ev.test, "seconds": ev.cost})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--device", default="cuda:0", help="the device compared with the CPU")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch
    from scipy.stats import kendalltau

    from nasflow.devices import device_class
    from nasflow.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    cells = []
    while len(cells) < args.cells:
        arch = space.sample(rng)
        if arch not in cells:
            cells.append(arch)
    gpu_options = {"precision": "bf16", "cuda_graph": True} if args.device.startswith("cuda") else {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        cpu = accuracies(space, cells, "cpu", a)
        cpu_other_seed = accuracies(space, cells, "cpu", a, seed=1)
        gpu = accuracies(space, cells, args.device, b, **gpu_options)
        again = accuracies(space, cells[: args.repeat], args.device, c, **gpu_options)
    def tau(x, y):
        return round(float(kendalltau([r["valid"] for r in x], [r["valid"] for r in y])[0]), 4)

    drift = max(max(abs(x["valid"] - y["valid"]), abs(x["test"] - y["test"])) for x, y in zip(gpu, again))
    report = {
        "torch": torch.__version__, "device": device_class(args.device),
        "kendall_tau_valid_cpu_vs_device": tau(cpu, gpu), "cells": args.cells,
        "kendall_tau_valid_cpu_seed0_vs_seed1": tau(cpu, cpu_other_seed),
        "max_gpu_repeat_difference": round(drift, 4), "repeated_cells": args.repeat,
        "cpu_seconds_per_cell": round(float(np.mean([r["seconds"] for r in cpu])), 3),
        "gpu_seconds_per_cell": round(float(np.mean([r["seconds"] for r in gpu])), 3),
        "rows": [{"arch": space.format(arch), "cpu": x, "device": y, "cpu_seed1": z}
                 for arch, x, y, z in zip(cells, cpu, gpu, cpu_other_seed)],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    for row in report["rows"]:
        print(f"{row['arch']}  cpu {row['cpu']['valid']:7.3f}  device {row['device']['valid']:7.3f}  "
              f"cpu seed 1 {row['cpu_seed1']['valid']:7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
