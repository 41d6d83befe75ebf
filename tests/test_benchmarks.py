"""Smoke test of the physics benchmark script (small sizes; harmonica not required)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# -- benchmarks/simpeg_joint.py (SimPEG is used by that benchmark only, never by the package) ----
SIMPEG_SCRIPT = SCRIPT.parent / "simpeg_joint.py"


def _run_simpeg_joint(*args: str, block_simpeg: bool = False) -> subprocess.CompletedProcess:
    # block_simpeg runs the script as if simpeg were not installed (an import of a module whose
    # sys.modules entry is None raises ImportError), whatever this environment holds.
    prelude = "import sys; sys.modules['simpeg'] = None; " if block_simpeg else ""
    code = (
        f"{prelude}import runpy, sys; sys.path.insert(0, {str(SIMPEG_SCRIPT.parent)!r}); "
        f"sys.argv = [{str(SIMPEG_SCRIPT)!r}, *{list(args)!r}]; "
        f"runpy.run_path({str(SIMPEG_SCRIPT)!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, check=False
    )


def test_simpeg_joint_without_simpeg_prints_a_skip_json_object():
    proc = _run_simpeg_joint("--quick", block_simpeg=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert "simpeg is not installed" in data["skipped"] and "pip install simpeg" in data["skipped"]
    assert "bayesjoint" not in data and "simpeg" not in data


def test_simpeg_joint_negative_control_bad_cells_fail_without_json():
    # Fewer than 3 cells along an axis leave no interior cell for the cross-gradient: refused
    # before anything runs, with a non-zero exit and nothing on stdout.
    proc = _run_simpeg_joint("--cells", "2", "4", "4", block_simpeg=True)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "at least 3 cells" in proc.stderr


# -- benchmarks/sbc_repeat.py: the false-alarm rate of a family over seeds -----------------------
REPEAT = SCRIPT.parent / "sbc_repeat.py"


def _repeat(tmp_path, *args: str) -> tuple[list[dict], dict]:
    proc = subprocess.run(
        [sys.executable, str(REPEAT), *args], capture_output=True, text=True, timeout=300,
        check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines[:-1], lines[-1]


def _check_summary(runs: list[dict], summary: dict) -> int:
    from scipy import stats

    failures = sum(run["verdict"] == "fail" for run in runs)
    assert summary["runs"] == len(runs) and summary["failures"] == failures
    assert summary["failure_rate"] == failures / len(runs)
    ci = stats.binomtest(failures, len(runs)).proportion_ci(0.95, method="exact")
    assert summary["failure_rate_95ci"] == [round(ci.low, 4), round(ci.high, 4)]
    assert sum(summary["flagged_counts"].values()) == sum(len(r["flagged"]) for r in runs)
    return failures


def test_sbc_repeat_keeps_each_seeds_result_and_pools_their_ranks(tmp_path):
    import xarray as xr

    out = tmp_path / "results"
    runs, summary = _repeat(
        tmp_path,
        "--family",
        "linear",
        "--seeds",
        "1",
        "3",
        "--simulations",
        "20",
        "--out",
        str(out),
    )
    assert [run["seed"] for run in runs] == [1, 2, 3]
    _check_summary(runs, summary)
    datasets = [xr.load_dataset(out / f"{run['seed']}.nc") for run in runs]
    for run, ds in zip(runs, datasets, strict=True):
        assert ds.sizes["simulation"] == 20 and ds.attrs["verdict"] == run["verdict"]
    # the pooled mean ranks, recomputed from the kept files: ranks uniform on 0..L
    ranks = np.concatenate([ds["rank"].values for ds in datasets])
    n_ranks = int(datasets[0].attrs["n_ranks"])
    uniform = np.arange(n_ranks)  # the ranks' distribution under calibration
    z = (ranks.mean(axis=0) - uniform.mean()) / (uniform.std() / np.sqrt(60))
    quantities = [str(q) for q in datasets[0]["quantity"].values]
    assert summary["pooled"]["simulations"] == 60
    assert list(summary["pooled"]["mean_rank_z"]) == quantities
    np.testing.assert_allclose(list(summary["pooled"]["mean_rank_z"].values()), z, atol=0.006)


def test_sbc_repeat_counts_every_seed_of_the_negative_control_as_failing(tmp_path):
    # data twice as noisy as the fit assumes: every verdict fails (100 of 100 seeds at 200
    # simulations, docs/calibration.md; 20 simulations suffice for the log-likelihoods)
    runs, summary = _repeat(
        tmp_path, "--family", "negative-control", "--seeds", "1", "2", "--simulations", "20"
    )
    assert _check_summary(runs, summary) == 2 == summary["runs"]
    assert summary["flagged_counts"].get("loglik[blurred]") == 2
    assert "pooled" not in summary  # nothing kept, nothing pooled


def test_sbc_repeat_refuses_an_empty_seed_range_without_json():
    proc = subprocess.run(
        [sys.executable, str(REPEAT), "--family", "linear", "--seeds", "3", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and proc.stdout == ""
    assert "LAST >= FIRST" in proc.stderr
