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


def _kill_group(proc) -> None:
    """SIGKILL the child's whole process group (it runs in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for f in proc.output_files:
        f.close()


def _output(proc) -> str:
    """What the child wrote to its output files (read, never a pipe that could fill)."""
    return "".join(Path(f.name).read_text(errors="replace") for f in proc.output_files)


def _run_until_written(command: list[str], path: Path, timeout: float = 240.0):
    """Start ``command``; return it and its descendants once ``path`` exists.

    The child runs in a new session (its own process group), writing its output to files
    beside ``path``; on a timeout or an early end the whole group is killed.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = open(path.with_suffix(".stdout"), "w")
    err = open(path.with_suffix(".stderr"), "w")
    proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, start_new_session=True)
    proc.output_files = (out, err)
    start = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            _kill_group(proc)
            raise AssertionError(f"the run ended before writing: {_output(proc)[-2000:]}")
        if time.monotonic() - start > timeout:
            _kill_group(proc)
            raise AssertionError(f"no checkpoint written in time: {_output(proc)[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # let the workers run past the first write
    return proc, psutil.Process(proc.pid).children(recursive=True)


def _stop(proc, signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AssertionError(f"the run did not stop: {_output(proc)[-2000:]}") from None
    finally:
        for f in proc.output_files:
            f.close()
    return proc.returncode, _output(proc)


COLLAPSED_SCRIPT = """
import sys
import numpy as np
import bayesjoint as bj
from bayesjoint.validate import blur_matrix

rng = np.random.default_rng(1)
x = bj.Parameter("x", shape=8, prior=bj.priors.Normal(0.0, 0.5))
blur = blur_matrix(8, 1.5)
blurred = bj.Modality("blurred", bj.physics.Linear(blur, input="x"),
                      blur @ rng.normal(0, 0.5, 8) + 0.1 * rng.standard_normal(8),
                      bj.noise.Gaussian(bj.priors.HalfNormal(0.2)))
problem = bj.JointInversion([x], [blurred])
try:
    problem.sample(draws=1_000_000, tune=200, chains=2, cores=2, method="collapsed",
                   random_seed=1, progressbar=False, checkpoint=sys.argv[1],
                   checkpoint_every=0.5)
except bj.SamplingInterrupted as stop:
    sys.exit(stop.exit_status)
"""


def test_sigterm_stops_the_collapsed_route_keeps_its_draws_and_leaves_no_process(tmp_path):
    # the collapsed route records the hyperparameter chains as they come and draws the fields
    # of every kept draw when it writes: the file holds fields for every kept draw
    path = tmp_path / "collapsed.nc"
    proc, children = _run_until_written([sys.executable, "-c", COLLAPSED_SCRIPT, str(path)], path)
    assert len(children) >= 2
    code, output = _stop(proc, signal.SIGTERM)
    assert code == 143, output[-2000:]
    kept = _check_file(path, "SIGTERM", 2)
    idata = bj.load(path)
    assert idata.posterior.attrs["route"] == "collapsed"
    for c, n in enumerate(kept):  # the fields are drawn for exactly the kept draws
        assert np.all(np.isfinite(idata.posterior["x"].values[c, :n]))
        assert np.all(np.isnan(idata.posterior["x"].values[c, n:]))
    assert _survivors(children) == []


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_reap_stops_only_the_workers_of_the_sampling_thread():
    # A process another thread of the program starts while a run is on is not the sampler's:
    # reap must leave it running (negative control: the one the sampling thread started goes).
    import multiprocessing
    import threading

    from bayesjoint.inference.interrupt import StopSignals

    context = multiprocessing.get_context("fork")
    other: list = []
    with StopSignals() as signals:
        ours = context.Process(target=_sleep, args=(60,), daemon=True)
        ours.start()

        def start_other() -> None:
            other.append(context.Process(target=_sleep, args=(60,), daemon=True))
            other[0].start()

        thread = threading.Thread(target=start_other)
        thread.start()
        thread.join()
        stopped = signals.reap()
    try:
        assert stopped == [ours.pid]
        assert not ours.is_alive()
        assert other[0].is_alive()
    finally:
        other[0].kill()
        other[0].join(5)
        ours.join(5)


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
