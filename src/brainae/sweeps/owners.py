"""Which process runs a trial, and whether it still lives.

Optuna's heartbeat fails a trial only after its grace period (two minutes here), and until then a
killed worker's trial counts as running. Every trial therefore records its owner the moment it
starts (user attribute ``worker``): host, pid, the pid's start time and the pid space it lives in.
A sweep that starts, and every worker after each trial, fails at once the running trials whose
owner shares this machine's pid space and is gone, and queues their parameters again. Owners on
other machines (or in other containers) cannot be checked from here; the heartbeat covers them.
"""
from __future__ import annotations

import copy
import functools
import os
import socket
import warnings
from pathlib import Path
from typing import Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState


@functools.lru_cache(maxsize=1)
def pid_space() -> str:
    """This machine's boot and pid namespace: equal for two processes exactly when a pid of one
    names a process of the other. Containers on one host share the boot id but not the namespace;
    hosts share neither. Without /proc (macOS), the host name stands in."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"host:{socket.gethostname()}"


def _start_time(pid: int) -> Optional[str]:
    """The pid's start time in clock ticks since boot (Linux), "zombie" for an unreaped dead
    process, None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces
    return "zombie" if fields[0] == "Z" else fields[19]


def this_process() -> dict:
    """The owner record of this process."""
    return _record(os.getpid())  # by pid: a forked child must not inherit its parent's record


@functools.lru_cache(maxsize=4)
def _record(pid: int) -> dict:
    return {"host": socket.gethostname(), "pid": pid, "space": pid_space(), "start": _start_time(pid)}


def is_dead(owner: Optional[dict]) -> bool:
    """True only when the owner is certainly gone: same pid space, and its pid is free, a zombie,
    or now another process (a different start time). Anything unknown counts as alive."""
    if not isinstance(owner, dict) or owner.get("space") != pid_space() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a live process of another user
    start = _start_time(owner["pid"])
    return start == "zombie" or (start is not None and owner.get("start") not in (None, start))


def stamp(study: optuna.Study, trial: FrozenTrial) -> None:
    """Record this process as the owner of ``trial`` (called before it samples, see TrialSampler)."""
    study._storage.set_trial_user_attr(trial._trial_id, "worker", this_process())


class Retry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (a WAITING copy of the trial, its number in ``retry_history``), without the
    dead trial's user attributes: its owner would make the copy look dead once it runs, and its
    reason and epochs belong to the dead trial."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.user_attrs = {}
        super().__call__(study, trial)


RETRIES = 1  # a trial whose retry dies too is left failed: it may be what kills its workers (memory)


def fail_dead_owners(study: optuna.Study) -> list[int]:
    """Fail the running trials of dead owners and queue each once more; returns their numbers."""
    lost = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker")
        if not is_dead(owner):
            continue
        storage = study._storage  # the storage's own answer says which process won the race to fail it
        try:
            storage.set_trial_user_attr(t._trial_id, "lost", f"its worker (pid {owner['pid']} on {owner['host']}) died")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another process failed it first and queues the retry
        lost.append(t.number)
        with warnings.catch_warnings():  # "experimental" in Optuna 5, on every use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = Retry(max_retry=RETRIES)
        retry(study, storage.get_trial(t._trial_id))
    return lost
