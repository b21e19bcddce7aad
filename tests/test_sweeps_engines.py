"""Sweeps on real storage engines, killed with kill -9 mid-way and restarted at once (slow).

Each test runs the real command, ``brainae sweep --workers 2``, as a subprocess in its own process
group on tiny data, kills the whole group (the command and both workers) while two trials run,
starts the same command again and checks that the requested trials all finish, that no point was
drawn twice and that the restart did not wait out the heartbeat's two-minute grace period.

PostgreSQL: a throwaway server from Debian's package (``initdb``/``pg_ctl`` on the PATH or in
/usr/lib/postgresql/<version>/bin), started by the test on 127.0.0.1 on a free port in a temporary
folder and stopped afterwards; skipped with a reason where the server or psycopg2 is missing.
"""
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from brainae.sweeps.study import open_storage

pytestmark = pytest.mark.slow

TRIALS = 8  # of 12 epochs each: shorter trials left too brief a moment with both workers inside one
GRACE = 120  # the heartbeat's grace period (2 x the 60 s heartbeat) a restart used to wait out
SPACE = "train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n" \
        "model.latent_dim: {type: categorical, choices: [8, 16]}\n"
TINY = ["model.channels=[8,16,32]", "data.image_size=32", "train.batch_size=16", "train.accelerator=cpu"]


def _sweep_command(out: Path, storage: list[str]) -> list[str]:
    space = out.parent / "space.yaml"
    space.write_text(SPACE)
    return [sys.executable, "-m", "brainae", "sweep", "--model", "ae", "--data", "phantom:60", "--preset", "quick",
            "--epochs", "12", "--pruner", "none", "--space", str(space), "--trials", str(TRIALS), "--workers", "2",
            "--study", "crash", "--out", str(out), *storage] + [a for kv in TINY for a in ("--set", kv)]


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="crash", storage=open_storage(url)).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the database is busy for a moment
        return []


def _kill_mid_sweep_and_restart(tmp_path: Path, url: str, storage_flags: list[str]) -> None:
    out = tmp_path / "sw"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = _sweep_command(out, storage_flags)
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while True:  # until two trials have finished and both workers are inside their next ones
            states = [t.state for t in _trials(url)]
            if states.count(TrialState.COMPLETE) >= 2 and states.count(TrialState.RUNNING) == 2:
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert states.count(TrialState.COMPLETE) < TRIALS - 2, "never saw both workers inside a trial"
            assert time.monotonic() < deadline, "the sweep did not get going within 10 minutes"
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and both workers, with no chance to clean up
        except ProcessLookupError:
            pass  # it had ended already (the assertion above says why)
        proc.wait()
        log.close()
    before = _trials(url)
    killed = {t.number for t in before if t.state == TrialState.RUNNING}
    assert 1 <= len(killed) <= 2  # one of the two may have finished between the last look and the kill
    finished_before = sum(t.state == TrialState.COMPLETE for t in before)

    start = time.monotonic()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]

    trials = _trials(url)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == TRIALS  # every requested trial, the killed ones' retries among them
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(points)) == TRIALS, "a point was drawn twice"
    assert not any(t.user_attrs.get("duplicate_of") is not None for t in done)
    assert {t.number for t in trials if t.state == TrialState.FAIL} == killed
    retried = {t.system_attrs["retry_history"][-1]: t for t in done if t.system_attrs.get("retry_history")}
    assert set(retried) == killed
    # the same point again (a worker killed before its trial had sampled leaves none: the retry draws it)
    assert all(trials[n].params.items() <= retried[n].params.items() for n in killed)
    summary = json.loads((out / "sweep.json").read_text())
    for t in summary["trials"]:
        if t["number"] in killed:  # failed on start because their worker was dead, not after 2 minutes of silence
            assert "died; retried as trial" in t["reason"] and "heartbeat" not in t["reason"], t["reason"]
    assert seconds < GRACE, f"the restart took {seconds:.0f} s"
    assert "running in a worker that died; failed and queued again" in rerun.stdout
    print(f"restart: {seconds:.1f} s for the {TRIALS - finished_before} trials left, {len(killed)} of them retries")


def test_sqlite_sweep_killed_with_kill_9_completes_on_restart(tmp_path):
    out = tmp_path / "sw"
    _kill_mid_sweep_and_restart(tmp_path, f"sqlite:///{out / 'sweep.db'}", [])


# ---------------------------------------------------------------- a throwaway PostgreSQL server


def _postgres_bin() -> Path:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None)
    if not found:
        pytest.skip("no PostgreSQL server (initdb, pg_ctl) on this machine: apt-get install postgresql")
    return Path(os.path.realpath(found)).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    from importlib.util import find_spec

    if find_spec("psycopg2") is None and find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver for Python: pip install psycopg2-binary")
    bin_dir = _postgres_bin()
    # pytest's tmp_path lies under a folder only its owner may enter; the server may run as another user
    base = Path(tempfile.mkdtemp(prefix="brainae-pg-"))
    as_user = {}
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root; Debian's package makes a postgres user (else: nobody)
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.skip("running as root with neither a postgres nor a nobody user to run the server as")
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    port = _free_port()

    def run(*args):
        subprocess.run([str(bin_dir / args[0]), *args[1:]], check=True, capture_output=True, cwd=base, timeout=120,
                       env={**os.environ, "HOME": str(base)}, **as_user)

    data = base / "data"
    try:
        run("initdb", "-D", str(data), "-U", "brainae", "-A", "trust", "-E", "UTF8")
        # loopback only, the socket in our folder, and no fsync: the server lives as long as the tests
        run("pg_ctl", "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off", "start")
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "brainae", "sweeps")
    except subprocess.CalledProcessError as e:
        log = (base / "server.log").read_text() if (base / "server.log").is_file() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise AssertionError(f"{e.cmd[0]} failed: {e.stderr.decode()[-1500:]}\n{log[-1500:]}") from None
    yield f"postgresql://brainae@127.0.0.1:{port}/sweeps"
    subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                   capture_output=True, cwd=base, timeout=120, **as_user)
    shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_postgresql_sweep_killed_with_kill_9_completes_on_restart(tmp_path, postgres_url):
    _kill_mid_sweep_and_restart(tmp_path, postgres_url, ["--storage", postgres_url])
