"""The training oracle under a schedule: fidelities are stops on one training, a promotion continues from the
state kept at the rung below, and the result is the uninterrupted training's (issue 20)."""
import shutil

import pytest

from nasflow.errors import NasflowError
from nasflow.training import TrainingOracle
from nasflow.spaces.nb201 import NB201Space

space = NB201Space()
CONV = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")


@pytest.fixture(scope="module")
def plain(digits, tmp_path_factory):
    """CONV trained for 3 epochs in one go, in a cache of its own."""
    cache = tmp_path_factory.mktemp("plain")
    return TrainingOracle(space, digits, epochs=3, width=8, cells=1, seed=0, cache_dir=cache).query(CONV)


def scheduled(digits, cache, **options):
    return TrainingOracle(space, digits, epochs=5, width=8, cells=1, seed=0, cache_dir=cache, **options).for_schedule(3)


def test_a_promotion_continues_and_ends_where_one_training_ends(digits, tmp_path, plain):
    oracle = scheduled(digits, tmp_path)
    assert oracle.continues is True and oracle.epochs == 3  # the schedule's top rung, not the recipe's 5
    low = oracle.query(CONV, 1)
    assert low.fidelity == 1 and low.extra["epochs"] == 1 and low.extra["horizon"] == 3
    assert (low.extra["resumed_from_epoch"], low.extra["trained_epochs"]) == (0, 1)
    kept = list(oracle.checkpoint_dir.glob("*@1.safetensors"))
    assert len(kept) == 1  # the state at the rung, for the promotion
    high = oracle.query(CONV, 3)
    assert (high.extra["resumed_from_epoch"], high.extra["trained_epochs"]) == (1, 2)
    # bit for bit on the CPU: the learning rate is a function of the step, the state holds everything else
    assert (high.valid, high.test) == (plain.valid, plain.test)
    assert high.cost < plain.cost + low.cost  # charged the continuation's seconds only, not the first epoch again
    assert not list(oracle.checkpoint_dir.glob("*@*.safetensors"))  # a whole training needs no kept state
    again = scheduled(digits, tmp_path).query(CONV, 3)  # the top rung is the plain training's result: cached
    assert again.extra["cached"] is True and again.valid == high.valid


def test_an_interrupted_promotion_continues_from_its_checkpoint(digits, tmp_path, plain):
    oracle = scheduled(digits, tmp_path)
    oracle.query(CONV, 1)
    oracle.query(CONV, 2)
    (kept2,) = oracle.checkpoint_dir.glob("*@*.safetensors")  # the state at 1 is dropped once the one at 2 is kept
    assert kept2.name.endswith("@2.safetensors")
    key = kept2.name.split("@")[0]
    # what a promotion from 1 to 3 killed after its second epoch leaves: the state at 2 as its checkpoint
    shutil.move(kept2, oracle.checkpoint_dir / f"{key}.safetensors")
    result = scheduled(digits, tmp_path).query(CONV, 3)
    assert (result.extra["resumed_from_epoch"], result.extra["trained_epochs"]) == (2, 1)
    assert (result.valid, result.test) == (plain.valid, plain.test)
    assert not (oracle.checkpoint_dir / f"{key}.safetensors").exists()  # done: the checkpoint is removed


def test_a_fidelity_past_the_top_rung_is_refused(digits, tmp_path):
    with pytest.raises(NasflowError, match="past the schedule's top rung of 3 epochs"):
        scheduled(digits, tmp_path).query(CONV, 4)
