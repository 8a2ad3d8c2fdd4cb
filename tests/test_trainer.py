"""The device-independent trainer on the CPU: the update rule, exact resume, checkpoints, recipes, devices."""
import json
import math

import numpy as np
import pytest
import torch

from nasflow import checkpoints
from nasflow.devices import (check_cuda_graph, parse_devices, resolve_device, resolve_precision, torch_threads,
                             worker_device)
from nasflow.errors import CheckpointError, NasflowError
from nasflow.recipes import PRESETS, get_recipe
from nasflow.spaces.nb201 import NB201Space
from nasflow.trainer import Hardware, cosine_lr, sgd_update, train_network
from nasflow.training import TrainingOracle

space = NB201Space()
CELL = space.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|")
NO_CUDA = not torch.cuda.is_available()


def _net(seed=0):
    torch.manual_seed(seed)
    return space.network(CELL, num_classes=10, in_channels=1, width=4, cells=1)


def test_sgd_update_is_torch_sgd_with_nesterov():
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    buffers = [torch.zeros_like(p) for p in ours]
    opt = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ours]
        lr = 0.1 * (1 - step / 10)
        for group in opt.param_groups:
            group["lr"] = lr
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        sgd_update(ours, buffers, torch.tensor(lr), 0.9, 5e-4)
        opt.step()
        for p, q in zip(ours, theirs):
            assert torch.allclose(p, q, atol=1e-7, rtol=1e-6)


def test_cosine_schedule_runs_from_lr_to_zero():
    recipe = get_recipe("digits")
    assert cosine_lr(recipe, 0, 100) == recipe.lr
    assert cosine_lr(recipe, 50, 100) == pytest.approx(recipe.lr / 2)
    assert cosine_lr(recipe, 100, 100) == pytest.approx(0.0, abs=1e-12)
    lrs = [cosine_lr(recipe, s, 40) for s in range(41)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_same_seed_same_numbers_and_full_batches(digits):
    recipe = get_recipe("digits", epochs=2, batch_size=100)
    a = train_network(_net(), digits, recipe, Hardware(threads=1), seed=3)
    b = train_network(_net(), digits, recipe, Hardware(threads=1), seed=3)
    assert (a["valid"], a["test"]) == (b["valid"], b["test"])
    assert a["valid"] > 50 and a["images_per_s"] > 0 and a["resumed_from_epoch"] == 0
    assert a["cuda_graph"] is False
    # 1,078 training images at batch 100: 10 full batches an epoch, the remainder left out
    net = _net()
    train_network(net, digits, recipe, Hardware(threads=1), seed=3)
    assert int(net.stem[1].num_batches_tracked) == 2 * (len(digits.y_train) // 100)


class Killed(Exception):
    pass


def test_a_killed_training_resumes_bit_for_bit(digits, tmp_path, crash_after_checkpoints):
    recipe = get_recipe("digits", epochs=4, batch_size=64, augment="standard")
    whole_net = _net()
    whole = train_network(whole_net, digits, recipe, Hardware(threads=1), seed=1)

    path = tmp_path / "ckpt.safetensors"
    saved = crash_after_checkpoints(2, Killed)  # the process dies right after its second checkpoint (after epoch 2)
    with pytest.raises(Killed):
        train_network(_net(), digits, recipe, Hardware(threads=1), seed=1, checkpoint=path, checkpoint_key="k",
                      checkpoint_every=0)
    assert saved == [1, 2] and path.exists()
    crash_after_checkpoints.undo()
    resumed_net = _net(seed=99)  # other initial weights: the checkpoint must replace them all
    resumed = train_network(resumed_net, digits, recipe, Hardware(threads=1), seed=1, checkpoint=path,
                            checkpoint_key="k", checkpoint_every=0)
    assert resumed["resumed_from_epoch"] == 2
    assert (resumed["valid"], resumed["test"]) == (whole["valid"], whole["test"])
    for (name, a), b in zip(whole_net.state_dict().items(), resumed_net.state_dict().values()):
        assert torch.equal(a, b), name
    assert not path.exists()  # a finished training leaves no checkpoint behind


def test_checkpoint_interval_is_respected(digits, tmp_path, monkeypatch):
    saves = []
    monkeypatch.setattr("nasflow.trainer.save_training_state", lambda *args: saves.append(args[5]))
    recipe = get_recipe("digits", epochs=3)
    train_network(_net(), digits, recipe, Hardware(threads=1), 0, checkpoint=tmp_path / "c", checkpoint_every=3600)
    assert saves == []
    train_network(_net(), digits, recipe, Hardware(threads=1), 0, checkpoint=tmp_path / "c", checkpoint_every=0)
    assert saves == [1, 2]  # never after the last epoch: the result itself is then saved


def _checkpoint(tmp_path, key="k"):
    net = _net()
    buffers = [torch.zeros_like(p) for p in net.parameters()]
    path = tmp_path / "c.safetensors"
    checkpoints.save_training_state(path, key, net, buffers, torch.Generator().manual_seed(0), 2, 1.5)
    return path, net, buffers


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"garbage"), "damaged or not a safetensors"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "damaged or not a safetensors"),
    (lambda p: p.write_bytes(b""), "damaged or not a safetensors"),
])
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, damage, message):
    path, net, buffers = _checkpoint(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoints.load_training_state(path, "k", net, buffers, torch.Generator())
    assert "\n" not in str(info.value) and f"delete {path}" in str(info.value)


def test_foreign_checkpoints_are_refused(tmp_path):
    from safetensors.torch import save_file

    path, net, buffers = _checkpoint(tmp_path, key="another training")
    with pytest.raises(CheckpointError, match="belongs to another training"):
        checkpoints.load_training_state(path, "k", net, buffers, torch.Generator())
    other = space.network(CELL, num_classes=10, in_channels=1, width=8, cells=1)
    path, _, _ = _checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit this network|does not hold"):
        checkpoints.load_training_state(path, "k", other, [torch.zeros_like(p) for p in other.parameters()],
                                        torch.Generator())
    save_file({"x": torch.zeros(2)}, str(path), metadata={"nasflow": json.dumps({"format": "something else"})})
    with pytest.raises(CheckpointError, match="not a nasflow training checkpoint"):
        checkpoints.load_training_state(path, "k", net, buffers, torch.Generator())


def test_oracle_with_a_corrupt_checkpoint_in_the_cache_is_a_one_line_error(digits, tmp_path):
    oracle = TrainingOracle(space, digits, epochs=1, width=4, cells=1, device="cpu", cache_dir=tmp_path)
    path = oracle.checkpoint_dir / f"{oracle._key(CELL)}.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x04planted")
    with pytest.raises(CheckpointError, match="delete"):
        oracle.query(CELL)


def test_recipes_presets_overrides_and_cache_keys(digits, tmp_path):
    nb201 = get_recipe("nb201")
    assert (nb201.epochs, nb201.batch_size, nb201.lr, nb201.weight_decay, nb201.momentum, nb201.augment,
            nb201.width, nb201.cells) == (200, 256, 0.1, 5e-4, 0.9, "standard", 16, 5)
    assert get_recipe("nb201", epochs=3, lr=0.05).epochs == 3 and PRESETS["nb201"].epochs == 200
    with pytest.raises(NasflowError, match="unknown recipe 'imagenet'"):
        get_recipe("imagenet")
    with pytest.raises(NasflowError, match="unknown augmentation"):
        get_recipe(augment="cutout")
    with pytest.raises(NasflowError, match="batch size must be a positive integer"):
        get_recipe(batch_size=0)
    with pytest.raises(NasflowError, match="learning rate must be > 0"):
        get_recipe(lr=0.0)
    base = TrainingOracle(space, digits, device="cpu", cache_dir=tmp_path)
    assert base.recipe.name == "digits" and (base.recipe.width, base.recipe.cells) == (8, 1)
    keys = {base._key(CELL)}
    for options in ({"recipe": "nb201"}, {"augment": "standard"}, {"batch_size": 32}, {"learning_rate": 0.05}):
        keys.add(TrainingOracle(space, digits, device="cpu", cache_dir=tmp_path, **options)._key(CELL))
    assert len(keys) == 5  # every part of the recipe is part of the measurement
    same = TrainingOracle(space, digits, device="cpu", cache_dir=tmp_path, threads=2, checkpoint_every=1)
    assert same._key(CELL) == base._key(CELL)  # how it runs on the CPU is not
    assert base.config["device_class"] == "cpu" and base.config["precision"] == "fp32"


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusals of a machine without CUDA")
def test_cuda_options_without_cuda_are_refused():
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and resolve_device(" CPU ") == "cpu"
    for spec, message in (("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"), ("gpu", "unknown device"),
                          ("auto:1", "unknown device"), ("cuda:-1", "unknown device")):
        with pytest.raises(NasflowError, match=message):
            resolve_device(spec)
    with pytest.raises(NasflowError, match="no CUDA device"):
        parse_devices("0")
    with pytest.raises(NasflowError, match="bf16 needs a CUDA device"):
        resolve_precision("bf16", "cpu")
    with pytest.raises(NasflowError, match="--cuda-graph needs a CUDA device"):
        check_cuda_graph(True, "cpu")


def test_device_helpers():
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("auto", "cuda:0") == "bf16"
    assert resolve_precision("fp32", "cuda:0") == "fp32"
    with pytest.raises(NasflowError, match="unknown precision"):
        resolve_precision("fp16", "cpu")
    assert [worker_device("cpu", [0, 1], w) for w in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("cuda:1", None, 3) == "cuda:1"
    for bad in ("", "0,,1", "a", "0;1", "-1"):
        with pytest.raises(NasflowError, match="--devices takes CUDA device indices"):
            parse_devices(bad)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_small_steps_train_on_one_thread_and_large_ones_on_what_they_are_given(digits, tmp_path, monkeypatch):
    seen = []
    real = train_network

    def spy(net, data, recipe, hardware, *args, **kwargs):
        seen.append(hardware.threads)
        return real(net, data, recipe, hardware, *args, **kwargs)

    monkeypatch.setattr("nasflow.training.train_network", spy)
    TrainingOracle(space, digits, epochs=1, device="cpu", cache_dir=tmp_path / "a").query(CELL)
    TrainingOracle(space, digits, epochs=1, device="cpu", threads=2, cache_dir=tmp_path / "b").query(CELL)
    big = TrainingOracle(space, digits, epochs=1, width=32, cells=2, batch_size=512, device="cpu",
                         cache_dir=tmp_path / "c")
    big.query(CELL)
    assert seen == [1, 2, None]


def test_oracle_reports_device_speed_and_summary(digits, tmp_path):
    oracle = TrainingOracle(space, digits, epochs=1, width=4, device="cpu", cache_dir=tmp_path)
    assert oracle.speed_summary() is None
    ev = oracle.query(CELL)
    assert ev.extra["device"] == "cpu" and ev.extra["precision"] == "fp32" and ev.extra["images_per_s"] > 0
    assert ev.extra["resumed_from_epoch"] == 0 and ev.extra["cuda_graph"] is False
    summary = oracle.speed_summary()
    assert summary["device"] == "cpu" and summary["trainings"] == 1
    assert math.isclose(summary["images_per_s"], ev.extra["images_per_s"], rel_tol=1e-3)
    oracle.query(CELL)  # from the cache: no training, no new speed
    assert oracle.speed_summary()["trainings"] == 1


def test_the_cpu_never_refuses_data_for_memory_and_nbytes_counts_every_split(digits):
    from nasflow.devices import check_fits

    check_fits(10 ** 15, "cpu")  # the CPU path never refuses: it holds the data already
    assert digits.nbytes == sum(a.nbytes for a in (digits.x_train, digits.y_train, digits.x_valid, digits.y_valid,
                                                   digits.x_test, digits.y_test))
    assert digits.x_train.dtype == np.float32


def test_workers_take_their_devices_round_robin(monkeypatch):
    from nasflow import devices
    from nasflow.experiments import runs
    from nasflow.spaces import get_space

    monkeypatch.setattr(devices, "cuda_count", lambda: 2)  # a machine with two GPUs, as far as the checks go
    monkeypatch.setattr("nasflow.training.device_class", lambda device: "cuda:Fake" if device != "cpu" else "cpu")
    settings = runs.complete({"training": {"epochs": 1}, "hardware": {"device": "cuda", "devices": "0,1"}})
    oracles = [runs.open_oracle(get_space("nb201"), settings, worker=w)[0] for w in range(4)]
    assert [o.hardware.device for o in oracles] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert {o._key(CELL) for o in oracles} == {oracles[0]._key(CELL)}  # a GPU's index is not the measurement
    alone = runs.open_oracle(get_space("nb201"), runs.complete({"training": {}, "hardware": {"device": "cuda:1"}}))
    assert alone[0].hardware.device == "cuda:1" and alone[0].hardware.precision == "bf16"
