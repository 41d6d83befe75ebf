"""Interrupts in real processes: SIGINT/SIGTERM stop every chain, keep the draws, leave no worker.

Each test starts a long checkpointed run in a child process, waits until the first checkpoint
write appears, sends the signal, and checks the exit status, the file (kept draws, provenance
``interrupted``) and that no process the child started survives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import bayesjoint as bj
from bayesjoint.inference.checkpoint import kept_draws

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
import bayesjoint as bj
from bayesjoint.validate import blur_and_points_problem

problem = blur_and_points_problem(8, n_points=3)
try:
    problem.sample(draws=1_000_000, tune=200, chains=4, cores=int(sys.argv[2]), method="nuts",
                   random_seed=1, progressbar=False, checkpoint=sys.argv[1],
                   checkpoint_every=0.5)
except bj.SamplingInterrupted as stop:
    sys.exit(stop.exit_status)
"""


def _run_until_written(command: list[str], path: Path, timeout: float = 240.0):
    """Start ``command``; return it and its descendants once ``path`` exists."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    start = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"the run ended before writing: {err.decode()[-2000:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError("no checkpoint written in time")
        time.sleep(0.1)
    time.sleep(1.0)  # let the workers run past the first write
    return proc, psutil.Process(proc.pid).children(recursive=True)


def _stop(proc, signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode() + err.decode()


def _survivors(children) -> list[int]:
    time.sleep(0.5)
    alive = []
    for child in children:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _check_file(path: Path, signal_name: str, chains: int) -> list[int]:
    idata = bj.load(path)
    info = kept_draws(idata)
    assert info["interrupted"] == signal_name and not info["complete"]
    kept = info["draws_per_chain"]
    assert len(kept) == chains and sum(kept) > 0
    # the per-chain counts are the draws actually in the file (the rest is NaN padding)
    values = next(iter(idata.posterior.data_vars.values())).values
    finite = np.isfinite(values.reshape(*values.shape[:2], -1)[..., 0]).sum(axis=1)
    assert finite.tolist() == kept
    return kept


@pytest.mark.parametrize(
    ("signum", "cores", "status"),
    [(signal.SIGTERM, 2, 143), (signal.SIGINT, 2, 130), (signal.SIGINT, 1, 130)],
)
def test_signal_stops_python_run_keeps_draws_and_leaves_no_process(tmp_path, signum, cores, status):
    path = tmp_path / "run.nc"
    command = [sys.executable, "-c", SCRIPT, str(path), str(cores)]
    proc, children = _run_until_written(command, path)
    if cores > 1:
        assert len(children) >= cores  # the workers exist before the signal
    code, output = _stop(proc, signum)
    assert code == status, output[-2000:]
    kept = _check_file(path, signal.Signals(signum).name, 4)
    if cores == 1:  # one signal stops the run: the chains after the first never start
        assert kept[1:] == [0, 0, 0], kept
    assert _survivors(children) == []


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_demo_command_interrupted_exits_with_signal_status_and_says_what_it_kept(
    tmp_path, signum, status
):
    path = tmp_path / "demo-checkpoint.nc"
    out = tmp_path / "demo.nc"
    command = [sys.executable, "-m", "bayesjoint", "demo", "--draws", "1000000", "--tune",
               "200", "--chains", "2", "--cores", "2", "--no-progress", "--out", str(out),
               "--checkpoint", str(path), "--checkpoint-every", "0.5"]  # fmt: skip
    proc, children = _run_until_written(command, path)
    code, output = _stop(proc, signum)
    assert code == status, output[-2000:]
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: kept" in output and "OK" not in output.split("interrupted")[-1]
    assert not out.exists()  # no report claims a finished run
    _check_file(path, name, 2)
    assert _survivors(children) == []
    diagnosis = subprocess.run(
        [sys.executable, "-m", "bayesjoint", "diagnose", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"run cut short (interrupted by {name})" in diagnosis.stdout, diagnosis.stderr
