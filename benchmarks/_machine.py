"""What the benchmark scripts record about the machine and their own memory.

Imported by the scripts in this folder (``python benchmarks/<name>.py`` puts the folder on
``sys.path``); not part of the package.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any


def package_version(name: str) -> str | None:
    """Return the installed version of distribution ``name``, or None."""
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def machine_info(packages: Sequence[str]) -> dict[str, Any]:
    """Platform, CPU, memory, the versions of ``packages`` and the BLAS thread pools."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        ),
        "versions": {name: package_version(name) for name in packages},
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        info["mem_total_gib"] = float(fh.readline().split()[1]) / 1024.0**2
    info["blas"] = blas_pools()
    return info


def blas_pools() -> list[dict[str, Any]] | None:
    """The BLAS thread pools loaded now (threadpoolctl), or None without threadpoolctl."""
    try:
        import scipy.linalg  # noqa: F401  (loads the BLAS numpy/scipy link against)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads", "filepath")
    return [{k: p.get(k) for k in keys} for p in threadpool_info()]


def rss_mib() -> tuple[float | None, float | None]:
    """Return (current, peak) resident set size of this process in MiB (current: Linux only)."""
    current = None
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = float(line.split()[1]) / 1024.0
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return current, None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return current, (peak / 1024.0**2 if sys.platform == "darwin" else peak / 1024.0)


def limit_blas_threads(threads: int) -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to ``threads`` threads (0: the library default); return the context to run in.

    Libraries loaded from now on (scipy's OpenBLAS, the one pytensor's C code links) read the
    environment; numpy's, loaded already, is limited through threadpoolctl when it is installed.
    """
    if not threads:
        return contextlib.nullcontext()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def print_json(compute: Any, *, blas_threads: int = 0) -> int:
    """Run ``compute()`` and print its result as the only JSON object on stdout; return 0.

    Anything a library prints while ``compute`` runs goes to stderr, so stdout stays one JSON
    object a caller can parse.
    """
    import json

    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr), limit_blas_threads(blas_threads):
        result = compute()
    json.dump(result, stdout, indent=2)
    stdout.write("\n")
    return 0


def timed_sample(
    problem: Any, method: str, settings: dict[str, Any], path: str | None, every: float | None
) -> tuple[Any, float, list[float]]:
    """Run ``problem.sample`` (with a checkpoint at ``path`` every ``every`` s, if given).

    Returns the result, the wall time of the call (s) and the time of each checkpoint write (s).
    """
    import time
    from unittest import mock

    from bayesjoint.inference import checkpoint as ckpt

    writes: list[float] = []
    original = ckpt.ChainRecorder.write

    def timed(self: Any, extra: Any = None) -> Any:
        out = original(self, extra)
        writes[:] = self.writes
        return out

    options = {} if every is None else {"checkpoint": path, "checkpoint_every": every}
    with mock.patch.object(ckpt.ChainRecorder, "write", timed):
        start = time.perf_counter()
        idata = problem.sample(method=method, progressbar=False, **settings, **options)
        wall = time.perf_counter() - start
    return idata, wall, writes


def convergence_row(idata: Any, names: Sequence[str], wall: float) -> dict[str, Any]:
    """Worst-cell convergence figures of ``names`` in ``idata``, with ESS/s for ``wall`` seconds.

    Min bulk and tail ESS and max R-hat over every element of the variables, divergences and the
    mean leapfrog steps per draw (NUTS sample stats).
    """
    import arviz as az

    post = idata.posterior[list(names)]
    bulk, tail, rhat = az.ess(post), az.ess(post, method="tail"), az.rhat(post)
    stats = idata.sample_stats
    low = min(float(bulk[n].min()) for n in names)
    return {
        "wall_s": round(wall, 2),
        "ess_bulk_min": round(low, 1),
        "ess_tail_min": round(min(float(tail[n].min()) for n in names), 1),
        "ess_per_s": round(low / wall, 4),
        "max_rhat": round(max(float(rhat[n].max()) for n in names), 4),
        "divergences": int(stats["diverging"].sum()),
        "mean_steps": round(float(stats["n_steps"].mean()), 2),
    }
