"""Smoke test of the physics benchmark script (small sizes; harmonica not required)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "physics.py"
CASE_KEYS = {"time_s", "times_s", "cpu_s", "tracemalloc_peak_mib", "rss_peak_delta_mib", "shape"}


def _run(*args: str) -> subprocess.CompletedProcess:
    # --no-peer keeps the run fast (no numba compilation) and independent of whether harmonica is
    # installed; the peer path is exercised by the full benchmark run documented in
    # docs/performance.md.
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-peer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def quick():
    proc = _run("--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_quick_prints_one_json_object(quick):
    # json.loads fails on anything besides one JSON document (stray prints, two objects).
    data = json.loads(quick.stdout)
    assert {"schema", "mode", "repeat", "machine", "gravity", "traveltime", "peer"} <= set(data)
    assert data["mode"] == "quick"
    assert data["repeat"] == 2
    assert {"platform", "cpu_count", "versions", "blas"} <= set(data["machine"])
    assert {"numpy", "scipy"} <= set(data["machine"]["versions"])
    for kind in ("gravity", "traveltime"):
        case = data[kind]["bayesjoint"]
        assert CASE_KEYS <= set(case)
        assert len(case["times_s"]) == 2
        assert case["time_s"] == min(case["times_s"]) > 0.0
    # Quick gravity problem: 8 x 8 x 4 prisms, 64 stations (one per column of cells).
    assert data["gravity"]["bayesjoint"]["shape"] == [64, 256]
    assert data["traveltime"]["bayesjoint"]["shape"] == [100, 400]
    assert data["traveltime"]["bayesjoint"]["nnz"] > 0
    # Without the peer the script says why instead of failing.
    assert data["peer"] is None
    assert "no-peer" in data["peer_reason"]


def test_negative_control_bad_option_fails_without_json():
    # A wrong option must fail loudly (non-zero exit, nothing on stdout), not print stale JSON.
    proc = _run("--repeat", "0")
    assert proc.returncode != 0
    assert proc.stdout == ""
    with pytest.raises(json.JSONDecodeError):
        json.loads(proc.stdout)
