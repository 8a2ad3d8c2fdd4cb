"""Training one network on one device: resident data, the step, the schedule, checkpoints.

The same code runs on the CPU and on CUDA; CUDA adds bf16 autocast, channels_last and,
on request, the whole step (forward, backward, update) captured in one CUDA graph. A
network as small as NAS-Bench-201's is bound by kernel launches on a GPU, not by
arithmetic, so replaying one graph per step is what lifts throughput (FINDINGS, "Training
on a GPU"). Every step is a full batch: an epoch trains on ``n // batch`` batches of a
fresh permutation, so the captured step never changes shape.

Resuming is exact: a checkpoint holds the weights, batch-norm statistics, momentum buffers
and the generator that draws permutations and augmentations, and the learning rate is a
function of the step number, so on the CPU a resumed training equals the uninterrupted one
bit for bit.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .cache import report_unwritable
from .checkpoints import load_training_state, save_training_state
from .data import Dataset
from .devices import check_fits, torch_threads
from .recipes import Recipe

EVAL_BATCH = 1024
WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graphs require


@dataclass(frozen=True)
class Hardware:
    """Resolved settings of where and how a training runs (nasflow.devices checks them)."""

    device: str = "cpu"  # "cpu" or "cuda:N"
    precision: str = "fp32"  # "fp32" or "bf16"
    cuda_graph: bool = False
    threads: Optional[int] = None  # torch intra-op threads on the CPU; None: as torch is set


_RESIDENT: dict = {}  # (data fingerprint, device) -> the splits as tensors on that device


def resident(data: Dataset, device: str) -> dict:
    """``data``'s splits on ``device``, uploaded once per process (one dataset kept at a time)."""
    import torch

    key = (data.fingerprint or id(data), device)
    if key not in _RESIDENT:
        _RESIDENT.clear()
        check_fits(data.nbytes, device, data.name)
        cuda = device.startswith("cuda")
        tensors = {}
        for split in ("train", "valid", "test"):
            x = torch.from_numpy(getattr(data, f"x_{split}")).to(device)
            tensors[f"x_{split}"] = x.contiguous(memory_format=torch.channels_last) if cuda else x
            tensors[f"y_{split}"] = torch.from_numpy(getattr(data, f"y_{split}")).to(device)
        _RESIDENT[key] = tensors
    return _RESIDENT[key]


def cosine_lr(recipe: Recipe, step: int, total: int) -> float:
    """The learning rate of ``step`` (0-based): cosine from ``recipe.lr`` to zero over ``total`` steps."""
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * step / total))


def sgd_update(params, buffers, lr, momentum: float, weight_decay: float) -> None:
    """SGD with Nesterov momentum and weight decay, as torch.optim.SGD computes it, with the learning rate a
    0-d tensor: torch 2.2's SGD takes it as a Python float, which a captured CUDA graph would freeze."""
    import torch

    live = [(p, b) for p, b in zip(params, buffers) if p.grad is not None]
    if not live:
        return
    ps, bs = [p for p, _ in live], [b for _, b in live]
    grads = [p.grad for p in ps]
    with torch.no_grad():
        torch._foreach_add_(grads, ps, alpha=weight_decay)
        torch._foreach_mul_(bs, momentum)
        torch._foreach_add_(bs, grads)
        torch._foreach_add_(grads, bs, alpha=momentum)
        torch._foreach_mul_(grads, lr)
        torch._foreach_sub_(ps, grads)


def accuracy(net, x, y, hardware: Hardware) -> float:
    import torch

    net.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.no_grad(), autocast(hardware):
        for i in range(0, len(y), EVAL_BATCH):
            correct += (net(x[i: i + EVAL_BATCH]).argmax(1) == y[i: i + EVAL_BATCH]).sum()
    net.train()
    return round(100.0 * int(correct) / len(y), 4)


def autocast(hardware: Hardware):
    import torch

    if hardware.precision == "bf16":
        # no cast cache: a captured graph must re-cast the weights it updates at every replay
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()


class _Step:
    """One training step, eager or replayed from a captured CUDA graph; falls back to eager (with one warning)
    when capture fails."""

    def __init__(self, net, params, buffers, lr, recipe: Recipe, hardware: Hardware, batch_shape, warn):
        import torch

        self.net, self.params, self.buffers, self.lr = net, params, buffers, lr
        self.recipe, self.hardware, self.warn = recipe, hardware, warn
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=hardware.device)
        self.graph = None
        self.eager_steps = 0
        self.capture = hardware.cuda_graph
        if self.capture:
            layout = torch.channels_last
            self.static_x = torch.empty(batch_shape, device=hardware.device).contiguous(memory_format=layout)
            self.static_y = torch.empty(batch_shape[0], dtype=torch.int64, device=hardware.device)

    def _forward_backward_update(self, x, y) -> None:
        import torch

        for p in self.params:
            p.grad = None
        with autocast(self.hardware):
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
        loss.backward()
        sgd_update(self.params, self.buffers, self.lr, self.recipe.momentum, self.recipe.weight_decay)
        self.loss_sum += loss.detach().float()

    def __call__(self, x, y) -> None:
        if not self.capture:
            self._forward_backward_update(x, y)
            return
        import torch

        if self.graph is None and self.eager_steps < WARMUP_STEPS:
            side = torch.cuda.Stream(device=self.hardware.device)
            side.wait_stream(torch.cuda.current_stream(self.hardware.device))
            with torch.cuda.stream(side):
                self._forward_backward_update(x, y)
            torch.cuda.current_stream(self.hardware.device).wait_stream(side)
            self.eager_steps += 1
            return
        if self.graph is None:
            self._capture()
            if self.graph is None:
                self._forward_backward_update(x, y)
                return
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()

    def _capture(self) -> None:
        import torch

        graph = torch.cuda.CUDAGraph()
        try:
            for p in self.params:
                p.grad = None
            torch.cuda.synchronize(self.hardware.device)
            with torch.cuda.graph(graph):
                self._forward_backward_update(self.static_x, self.static_y)
            self.graph = graph
        except Exception as e:  # capture fails on ops that synchronise or allocate on the host; eager still works
            self.capture = False
            torch.cuda.synchronize(self.hardware.device)
            for p in self.params:
                p.grad = None
            self.warn(f"CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                      f"training eagerly instead")

    def take_loss(self) -> float:
        value = float(self.loss_sum)
        self.loss_sum.zero_()
        return value


def train_network(net, data: Dataset, recipe: Recipe, hardware: Hardware, seed: int, *,
                  checkpoint: Optional[Path] = None, checkpoint_key: str = "", checkpoint_every: float = 300.0,
                  start: Optional[Path] = None, stop: Optional[int] = None, keep: Optional[Path] = None,
                  progress: bool = False, desc: str = "training", warn: Optional[Callable[[str], None]] = None) -> dict:
    """Train ``net`` on ``data`` by ``recipe``; returns valid/test accuracy, seconds, images/s and what ran.

    With ``checkpoint``, the state is saved there (atomically) at the end of an epoch once ``checkpoint_every``
    seconds have passed since the last save, training continues from it if it exists (or from ``start``, a
    state of the same training saved earlier; with ``stop``, from ``start`` only), and it is deleted when the
    training is done.

    ``stop``: train only the first ``stop`` of the recipe's epochs (its learning-rate schedule still spans them
    all) and evaluate there; ``keep`` then receives the state at ``stop``, from which a later call with a higher
    ``stop`` continues (``start=keep``) exactly as if the training had never paused (a promotion, issue 20).
    """
    import torch
    from tqdm.auto import tqdm

    warn = warn or (lambda message: None)
    with torch_threads(hardware.threads):
        tensors = resident(data, hardware.device)
        x, y = tensors["x_train"], tensors["y_train"]
        n = len(y)
        batch = min(recipe.batch_size, n)
        steps_per_epoch = n // batch
        total = steps_per_epoch * recipe.epochs
        cuda = hardware.device.startswith("cuda")
        net = net.to(hardware.device)
        if cuda:
            net = net.to(memory_format=torch.channels_last)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        buffers = [torch.zeros_like(p) for p in params]
        lr = torch.zeros((), dtype=torch.float32, device=hardware.device)
        generator = torch.Generator(device=hardware.device).manual_seed(int(seed))
        start_epoch, seconds_before = 0, 0.0
        stop = recipe.epochs if stop is None else int(stop)
        if start is None and stop == recipe.epochs and checkpoint is not None and checkpoint.exists():
            start = checkpoint  # a caller that stops early chooses its start itself (the checkpoint may be past it)
        if start is not None:
            start_epoch, seconds_before = load_training_state(start, checkpoint_key, net, buffers, generator)
            if start_epoch > stop:
                raise ValueError(f"{start} is past epoch {stop}: a caller chooses a state at or before the stop")
        augment = None
        if recipe.augment == "standard":
            from .augment import standard_augment as augment
        owns_checkpoint = start is not None and start == checkpoint  # removed at the end if continued or written here
        step = _Step(net, params, buffers, lr, recipe, hardware, (batch,) + tuple(x.shape[1:]), warn)
        started = time.perf_counter()
        last_save, epoch_seconds = started, []
        bar = tqdm(range(start_epoch, stop), desc=desc[:60], unit="epoch", leave=False,
                   disable=not progress, initial=start_epoch, total=stop)
        for epoch in bar:
            epoch_started = time.perf_counter()
            order = torch.randperm(n, generator=generator, device=hardware.device)
            for i in range(steps_per_epoch):
                idx = order[i * batch: (i + 1) * batch]
                xb = x[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                lr.fill_(cosine_lr(recipe, epoch * steps_per_epoch + i, total))
                step(xb, y[idx])
            loss = step.take_loss() / steps_per_epoch  # reading it waits for the GPU, so the timing is true
            seconds = time.perf_counter() - epoch_started
            epoch_seconds.append(seconds)
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{steps_per_epoch * batch / seconds:,.0f}")
            done = epoch + 1 == stop
            if checkpoint is not None and not done and time.perf_counter() - last_save >= checkpoint_every:
                elapsed = seconds_before + time.perf_counter() - started
                try:
                    save_training_state(checkpoint, checkpoint_key, net, buffers, generator, epoch + 1, elapsed)
                    owns_checkpoint = True
                except OSError as e:  # a checkpoint only shortens a resumed training; this one goes on without
                    report_unwritable(checkpoint, e)
                last_save = time.perf_counter()
        bar.close()
        elapsed = seconds_before + time.perf_counter() - started
        if keep is not None and stop < recipe.epochs:
            # saved before evaluating: evaluation changes nothing a continuation reads (eval mode keeps the
            # batch-norm statistics), but a kill during it should not cost the epochs just trained
            try:
                save_training_state(keep, checkpoint_key, net, buffers, generator, stop, elapsed)
            except OSError as e:  # a promotion then trains this part again: slower, never another result
                report_unwritable(keep, e)
        valid = accuracy(net, tensors["x_valid"], tensors["y_valid"], hardware)
        test = accuracy(net, tensors["x_test"], tensors["y_test"], hardware)
    if checkpoint is not None and owns_checkpoint:
        try:
            checkpoint.unlink(missing_ok=True)
        except OSError:  # under an unusable cache root there is nothing to remove
            pass
    return {
        "valid": valid, "test": test, "cost": round(seconds_before + time.perf_counter() - started, 4),
        "images_per_s": round(len(epoch_seconds) * steps_per_epoch * batch / sum(epoch_seconds), 1)
        if epoch_seconds else None,
        "epoch_seconds": epoch_seconds, "images_per_epoch": steps_per_epoch * batch,
        "resumed_from_epoch": start_epoch, "trained_epochs": stop - start_epoch, "cuda_graph": step.graph is not None,
    }
