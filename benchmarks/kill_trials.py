"""Kill trials: SIGKILL, SIGINT and SIGTERM at random moments of checkpointed runs.

Each trial starts a child process that samples a small problem
(``blur_and_points_problem(8, n_points=3)``, NUTS, 4 chains, ``checkpoint_every=0.5``) with more
draws than it can finish, waits for the first checkpoint write, then sends a signal after a random
delay (seeded). While it waits, the parent loads the checkpoint file whenever it changes and keeps
the last snapshot it read (its ``draws_per_chain`` and posterior values). After the signal it
checks:

- the exit status: SIGINT → 130, SIGTERM → 143, SIGKILL → -9 (killed by the signal);
- the file loads with :func:`bayesjoint.load` and holds, per chain, at least the draws of the last
  snapshot, bitwise equal to them on the common part (no flushed draw lost or changed);
- after SIGINT or SIGTERM the provenance says ``interrupted`` with the signal's name;
- no process of the run (the child's descendants, collected just before the signal) is alive
  5 s after the child ended.

Before the trials, a negative control shows that the comparison sees one lost draw and one
changed value. Surviving processes are killed after they are counted. Prints one JSON object
(per trial records on stderr as they finish); exits with status 1 when any trial fails.

Run: ``python benchmarks/kill_trials.py`` (``--trials N``, ``--seed S``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _machine
import numpy as np
import psutil

import bayesjoint as bj
from bayesjoint.inference.checkpoint import kept_draws

SCHEMA = 1

CHILD = """
import sys
import bayesjoint as bj
from bayesjoint.validate import blur_and_points_problem

problem = blur_and_points_problem(8, n_points=3)
try:
    problem.sample(draws=1_000_000, tune=200, chains=4, cores=int(sys.argv[2]),
                   method=sys.argv[3], random_seed=int(sys.argv[4]), progressbar=False,
                   checkpoint=sys.argv[1], checkpoint_every=0.5)
except bj.SamplingInterrupted as stop:
    sys.exit(stop.exit_status)
"""

SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
EXPECTED_STATUS = {signal.SIGKILL: -9, signal.SIGINT: 130, signal.SIGTERM: 143}


def _snapshot(path: Path) -> tuple[list[int], dict[str, np.ndarray]] | None:
    """Load the checkpoint file; None when it cannot be read at this moment."""
    try:
        idata = bj.load(path)
    except (OSError, ValueError):
        return None
    values = {name: np.array(var.values) for name, var in idata.posterior.data_vars.items()}
    return kept_draws(idata)["draws_per_chain"], values


def _alive(processes: list[psutil.Process]) -> list[int]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _compare(
    before: tuple[list[int], dict[str, np.ndarray]], after: tuple[list[int], dict[str, np.ndarray]]
) -> tuple[int, int]:
    """Return (draws of ``before`` missing from ``after``, (chain, variable) pairs that differ)."""
    lost = changed = 0
    for chain, (n_before, n_after) in enumerate(zip(before[0], after[0], strict=True)):
        lost += max(0, n_before - n_after)
        common = min(n_before, n_after)
        for name, array in before[1].items():
            a, b = array[chain, :common], after[1][name][chain, :common]
            if a.shape != b.shape or not np.array_equal(a, b):
                changed += 1
    return lost, changed


def _negative_control() -> dict[str, int]:
    """Show that :func:`_compare` sees a lost draw and a changed value (it can fail)."""
    values = {"x": np.arange(12.0).reshape(2, 6)}
    snap = ([6, 4], values)
    shorter = ([5, 4], values)
    altered = {"x": values["x"].copy()}
    altered["x"][1, 2] += 1e-12
    result = {
        "lost_seen": _compare(snap, shorter)[0],
        "changed_seen": _compare(snap, ([6, 4], altered))[1],
    }
    if result != {"lost_seen": 1, "changed_seen": 1} or _compare(snap, snap) != (0, 0):
        raise AssertionError(f"the draw comparison does not detect losses: {result}")
    return result


def _trial(folder: Path, index: int, signum: int, cores: int, method: str, delay: float) -> dict:
    path = folder / f"trial{index}.nc"
    command = [sys.executable, "-c", CHILD, str(path), str(cores), method, str(index + 1)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = folder / f"trial{index}.log"  # a file, not a pipe: a surviving worker cannot block reads
    with open(log, "wb") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    record: dict[str, Any] = {
        "trial": index,
        "signal": signal.Signals(signum).name,
        "cores": cores,
        "method": method,
        "delay_s": round(delay, 3),
        "failures": [],
    }
    start = time.monotonic()
    while not path.exists():
        if proc.poll() is not None or time.monotonic() - start > 300:
            proc.kill()
            proc.wait()
            out = log.read_text(errors="replace")
            record["failures"].append(f"no checkpoint written: {out[-1500:]}")
            return record
        time.sleep(0.05)
    record["first_write_s"] = round(time.monotonic() - start, 2)
    # poll the file until the signal; keep the last snapshot read
    last: tuple[list[int], dict[str, np.ndarray]] | None = None
    last_stat = None
    reads = 0
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        stat = os.stat(path)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key != last_stat:
            snap = _snapshot(path)
            if snap is not None:
                last, last_stat, reads = snap, key, reads + 1
        time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
    children = psutil.Process(proc.pid).children(recursive=True)
    record["children"] = len(children)
    proc.send_signal(signum)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        record["failures"].append("the child did not end within 120 s of the signal")
    out = log.read_text(errors="replace")
    record["exit_status"] = proc.returncode
    if proc.returncode != EXPECTED_STATUS[signum]:
        record["failures"].append(
            f"exit status {proc.returncode}, expected {EXPECTED_STATUS[signum]}: {out[-1500:]}"
        )
    time.sleep(5.0)
    survivors = _alive(children)
    record["survivors"] = len(survivors)
    if survivors:
        record["failures"].append(f"processes alive 5 s after the child ended: {survivors}")
        for process in children:  # clean up what the run left behind (they may ignore SIGTERM)
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    record["snapshot_reads"] = reads
    if last is None:
        record["failures"].append("no snapshot of the file could be read before the signal")
        return record
    final = _snapshot(path)
    if final is None:
        record["failures"].append("the checkpoint file does not load after the signal")
        return record
    snap_counts, counts = last[0], final[0]
    idata = bj.load(path)
    info = kept_draws(idata)
    record["snapshot_draws_per_chain"] = snap_counts
    record["draws_per_chain"] = counts
    record["interrupted"] = info["interrupted"]
    expected_name = None if signum == signal.SIGKILL else signal.Signals(signum).name
    if info["interrupted"] != expected_name or info["complete"]:
        record["failures"].append(
            f"provenance interrupted={info['interrupted']!r} complete={info['complete']}"
        )
    lost, changed = _compare(last, final)
    record["lost_draws"] = lost
    record["changed_variables"] = changed
    if lost:
        record["failures"].append(f"{lost} flushed draws lost ({snap_counts} → {counts})")
    if changed:
        record["failures"].append(f"{changed} (chain, variable) pairs differ from the snapshot")
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=6.0, help="seconds after first write")
    args = parser.parse_args(argv)
    control = _negative_control()
    rng = np.random.default_rng(args.seed)
    records = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bayesjoint_kill_") as folder:
        for index in range(args.trials):
            signum = SIGNALS[index % 3]
            cores = 1 + (index // 3) % 2
            method = "nuts-plain" if (index // 6) % 2 else "nuts"
            delay = float(rng.uniform(0.1, args.max_delay))
            records.append(_trial(Path(folder), index, signum, cores, method, delay))
            print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    totals = [sum(r["draws_per_chain"]) for r in records if "draws_per_chain" in r]
    failures = [f"trial {r['trial']} ({r['signal']}): {f}" for r in records for f in r["failures"]]
    return {
        "schema": SCHEMA,
        "machine": _machine.machine_info(["bayesjoint", "pymc", "psutil"]),
        "trials": len(records),
        "per_signal": {s.name: sum(r["signal"] == s.name for r in records) for s in SIGNALS},
        "per_cores": {str(c): sum(r["cores"] == c for r in records) for c in (1, 2)},
        "draws_kept_total": {
            "min": int(min(totals)) if totals else None,
            "median": float(np.median(totals)) if totals else None,
            "max": int(max(totals)) if totals else None,
        },
        "lost_draws": int(sum(r.get("lost_draws", 0) for r in records)),
        "changed_variables": int(sum(r.get("changed_variables", 0) for r in records)),
        "negative_control": control,
        "surviving_processes": int(sum(r.get("survivors", 0) for r in records)),
        "wall_s": round(time.monotonic() - started, 1),
        "failures": failures,
        "records": records,
    }


if __name__ == "__main__":
    result = main()
    print(json.dumps(result))
    sys.exit(1 if result["failures"] else 0)
