"""Training throughput of the NAS-Bench-201 network (C=16, N=5, 10 classes) on CIFAR-shaped data.

Prints images/s and seconds per 50,000-image epoch for each available device and setting, as
ratios against the one-thread CPU path nasflow had before issue 22 (its loop is reproduced
below, as it was, so both are measured in the same run on the same machine):

    python benchmarks/training_speed.py                        # CPU rows only on a machine without CUDA
    python benchmarks/training_speed.py --trainers 1,4,8 --json speed.json   # on a GPU machine

Settings: fp32 / bf16 autocast + channels_last / the step captured in a CUDA graph, batch 256
/ 512, and 1 / 4 / 8 trainers sharing one GPU (separate processes started together; their
steady images/s summed). Each measurement trains on synthetic data; the first epoch warms
up (cuDNN autotuning, graph capture) and is not counted. CPU rows use --cpu-images images.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time

import numpy as np

CELLS = {
    "all-conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    # the best cifar10-valid cell of NAS-Bench-201
    "best-valid": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "light": "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|",
}
GPU_SETTINGS = [  # (name, precision, cuda_graph, batch)
    ("fp32", "fp32", False, 256),
    ("bf16", "bf16", False, 256),
    ("bf16", "bf16", False, 512),
    ("bf16+graph", "bf16", True, 256),
    ("bf16+graph", "bf16", True, 512),
]
EPOCH = 50_000  # images in the epoch the seconds column speaks of


def synthetic(images: int, seed: int = 0):
    from nasflow.data import Dataset

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((images, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, images).astype(np.int64)
    few = slice(0, min(images, 512))
    return Dataset(f"synthetic-{images}", x, y, x[few], y[few], x[few], y[few], num_classes=10,
                   fingerprint=f"synthetic-{images}-{seed}")


def network(cell: str):
    import torch

    from nasflow.spaces import get_space

    space = get_space("nb201")
    torch.manual_seed(0)
    return space.network(space.parse(CELLS[cell]), num_classes=10, in_channels=3, width=16, cells=5)


def legacy_cpu(cell: str, data, batch: int = 256, epochs: int = 2) -> float:
    """images/s of the training loop nasflow had before issue 22: one thread, CPU tensors indexed per batch,
    torch.optim.SGD + CosineAnnealingLR, the loss read after every step. The first epoch is not counted."""
    import torch

    from nasflow.devices import torch_threads

    with torch_threads(1):
        return _legacy_loop(torch, network(cell), data, batch, epochs)


def _legacy_loop(torch, net, data, batch: int, epochs: int) -> float:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    n = len(y)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((n + batch - 1) // batch))
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    seconds = 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch):
            idx = order[i: i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        if epoch > 0:
            seconds += time.perf_counter() - started
    return n * (epochs - 1) / seconds


def steady(cell: str, data, device: str, precision: str, cuda_graph: bool, batch: int, threads=None,
           epochs: int = 2, ready=None) -> dict:
    """Train with nasflow's trainer; images/s over the epochs after the first."""
    from nasflow.recipes import get_recipe
    from nasflow.trainer import Hardware, resident, train_network

    hardware = Hardware(device=device, precision=precision, cuda_graph=cuda_graph, threads=threads)
    net = network(cell)
    resident(data, device)
    if ready is not None:
        ready.wait()  # trainers sharing a GPU start their epochs together
    run = train_network(net, data, get_recipe("nb201", epochs=epochs, batch_size=batch), hardware, seed=0)
    counted = run["epoch_seconds"][1:]
    return {"images_per_s": run["images_per_epoch"] * len(counted) / sum(counted), "cuda_graph": run["cuda_graph"]}


def _shared_trainer(args):
    cell, images, device, precision, cuda_graph, batch, epochs, ready, out = args
    out.put(steady(cell, synthetic(images), device, precision, cuda_graph, batch, threads=1, epochs=epochs,
                   ready=ready))


def shared_gpu(cell: str, images: int, trainers: int, precision: str, cuda_graph: bool, batch: int,
               epochs: int) -> dict:
    """Aggregate steady images/s of ``trainers`` processes training at once on cuda:0."""
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(trainers), ctx.Queue()
    procs = [ctx.Process(target=_shared_trainer,
                         args=((cell, images, "cuda:0", precision, cuda_graph, batch, epochs, ready, out),))
             for _ in range(trainers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return {"images_per_s": sum(r["images_per_s"] for r in results), "cuda_graph": all(r["cuda_graph"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=EPOCH, help="training images per GPU measurement")
    parser.add_argument("--cpu-images", type=int, default=1024, help="training images per CPU measurement")
    parser.add_argument("--cells", default=",".join(CELLS), help="cells to measure (names: %s)" % ", ".join(CELLS))
    parser.add_argument("--cpu-cells", default="all-conv3x3", help="cells measured on the CPU")
    parser.add_argument("--trainers", default="1,4,8", help="trainers sharing the GPU (for the all-conv3x3 cell)")
    parser.add_argument("--shared-images", type=int, default=12_800, help="training images per shared trainer")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU rows (ratios then need --cpu-from)")
    parser.add_argument("--cpu-from", default=None, help="JSON of an earlier run whose CPU rows are the reference")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    import torch

    rows = []

    def add(device, setting, cell, batch, trainers, ips, note=""):
        row = {"device": device, "setting": setting, "cell": cell, "batch": batch, "trainers": trainers,
               "images_per_s": round(ips, 1), "s_per_50k_epoch": round(EPOCH / ips, 2), "note": note}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                           "cores": os.cpu_count(), "rows": rows}, f, indent=1)

    cpu_cells = [c for c in args.cpu_cells.split(",") if c]
    if not args.gpu_only:
        data = synthetic(args.cpu_images)
        for cell in cpu_cells:
            add("cpu", "before issue 22 (1 thread)", cell, 256, 1, legacy_cpu(cell, data))
            add("cpu", f"trainer alone ({torch.get_num_threads()} threads)", cell, 256, 1,
                steady(cell, data, "cpu", "fp32", False, 256)["images_per_s"])
    elif args.cpu_from:
        with open(args.cpu_from) as f:
            rows.extend(r for r in json.load(f)["rows"] if r["device"] == "cpu")
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        data = synthetic(args.images)
        for cell in [c for c in args.cells.split(",") if c]:
            for setting, precision, graph, batch in GPU_SETTINGS:
                if cell != "all-conv3x3" and batch != 256:
                    continue  # the other cells: one batch size is enough to show the spread
                run = steady(cell, data, "cuda:0", precision, graph, batch)
                add(gpu, setting, cell, batch, 1, run["images_per_s"],
                    "" if run["cuda_graph"] == graph else "graph capture failed: eager")
        for trainers in [int(t) for t in args.trainers.split(",") if t and int(t) > 1]:
            for setting, precision, graph in (("bf16", "bf16", False), ("bf16+graph", "bf16", True)):
                run = shared_gpu("all-conv3x3", args.shared_images, trainers, precision, graph, 256, epochs=3)
                add(gpu, setting, "all-conv3x3", 256, trainers, run["images_per_s"],
                    "" if run["cuda_graph"] == graph else "graph capture failed: eager")
    reference = {r["cell"]: r["images_per_s"] for r in rows if r["device"] == "cpu" and r["setting"].startswith("before")}
    print(f"\n{'device':<26} {'setting':<28} {'cell':<12} {'batch':>5} {'trainers':>8} {'images/s':>10} "
          f"{'s/50k':>9} {'x 1-thread CPU':>15}")
    for r in rows:
        ref = reference.get(r["cell"]) or reference.get("all-conv3x3")
        ratio = f"{r['images_per_s'] / ref:,.1f}" if ref else "n/a"
        print(f"{r['device'][:26]:<26} {r['setting'][:28]:<28} {r['cell']:<12} {r['batch']:>5} {r['trainers']:>8} "
              f"{r['images_per_s']:>10,.0f} {r['s_per_50k_epoch']:>9,.1f} {ratio:>15} {r['note']}")


if __name__ == "__main__":
    main()
