"""Worker-process doubles for the supervision tests; module-level so spawned processes can import them."""
import os
import signal
import socket
import time
from pathlib import Path

from nasflow.errors import NasflowError


def first_dies(marker, *args):
    """The first process to run this SIGKILLs itself; the later ones return."""
    try:
        Path(marker).open("x").close()
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def always_dies(*args):
    os.kill(os.getpid(), signal.SIGKILL)


def sleeps(*args):
    time.sleep(60)


def bad_input_or_sleeps(slot, *args):
    if slot == 0:
        time.sleep(0.5)  # the others are up and running when this one fails
        raise NasflowError("benchmark table nowhere to be found; pass --benchmark")
    time.sleep(60)


def claims_then_dies(marker, storage_url, study_name, settings, stale_after, worker_index):
    """The first worker claims a cell and is SIGKILLed holding it; the later ones are real workers."""
    from nasflow.experiments.distributed import worker_main
    from nasflow.experiments.storage import claim, open_storage

    try:
        Path(marker).open("x").close()
    except FileExistsError:
        return worker_main(storage_url, study_name, settings, stale_after, worker_index)
    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    assert claim(storage, study_id, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", settings["budget"],
                  f"{socket.gethostname()}:{os.getpid()}") is not None
    os.kill(os.getpid(), signal.SIGKILL)


def claims_then_bad_input(storage_url, study_name, settings, stale_after, worker_index):
    """Claims a cell, then fails as bad input would, leaving its claim for the parent to release."""
    from nasflow.experiments.storage import claim, open_storage

    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    cell = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"]
    claim(storage, study_id, cell[worker_index % 2], settings["budget"], f"{socket.gethostname()}:{os.getpid()}")
    if worker_index == 0:
        deadline = time.monotonic() + 60
        while len(storage.get_all_trials(study_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the other worker holds its claim too when this one fails
        raise NasflowError("device cuda:7 does not exist; pass --device cpu")
    time.sleep(60)
