"""Benchmark the sensitivity-matrix builders of ``bayesjoint.physics`` against peers.

Measures wall time (best of ``--repeat`` runs) and peak memory to build

* the gravity sensitivity ``bayesjoint.physics.gravity_sensitivity`` (32 x 32 x 16 prisms x 1,024
  stations, float64),
* the straight-ray length matrix ``bayesjoint.physics.ray_lengths`` (200 x 200 cells x 10,000 rays),
* the same gravity matrix with the peers, when installed: harmonica (``prism_gravity`` with unit
  density, one column per prism), a numba-parallel jacobian built from choclo's prism kernel (the
  pattern choclo's documentation recommends for sensitivity matrices), and SimPEG's integral
  gravity simulation (``engine="choclo"``, sensitivities stored in RAM),

and checks that the peers' matrices agree with bayesjoint's. Prints ONE JSON object to stdout;
anything else (warnings, library chatter) goes to stderr.

By default each case runs in a fresh subprocess so that the peak resident set size
(``ru_maxrss``) is per case; ``--quick`` runs small sizes in-process (a smoke run).

Usage::

    python benchmarks/physics.py              # full sizes, best of 3
    python benchmarks/physics.py --repeat 5   # best of 5
    python benchmarks/physics.py --quick      # small sizes, in-process (a few seconds)

Conventions: metres, z positive up, stations at z = 0, prisms below; bayesjoint and harmonica
return the downward attraction g_z in mGal for kg/m³; SimPEG returns the upward g_z in mGal for
g/cm³, so its matrix is compared as ``-G_simpeg / 1000``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import _machine
import numpy as np
from _machine import package_version, rss_mib

SCHEMA = "bayesjoint-benchmark-physics/1"
MIB = 1024.0 * 1024.0

# Problem sizes: gravity (nx, ny, nz prisms; stations on an nx x ny grid at the cell centres) and
# travel time (cells per side; sources x receivers rays between two boreholes).
SIZES = {
    "full": {"gravity": (32, 32, 16), "traveltime": (200, 100, 100)},
    "quick": {"gravity": (8, 8, 4), "traveltime": (20, 10, 10)},
}
# Model extent (m): gravity block 1000 x 1000 m, 500 m thick, top 10 m below the stations at z = 0;
# travel-time section 2000 m wide (x) and 2000 m deep (z).
GRAV_EXTENT = (1000.0, 1000.0, -510.0, -10.0)
TT_EXTENT = 2000.0

PEER_CASES = ("harmonica_columns", "harmonica_columns_serial", "choclo_jacobian")


# ------------------------------------------------------------------------------------------------
# problem set-up
# ------------------------------------------------------------------------------------------------
def gravity_problem(shape: tuple[int, int, int]):
    """Return ``(grid, stations)`` for an ``nx x ny x nz`` prism block and ``nx x ny`` stations."""
    from bayesjoint.grid import Grid

    nx, ny, nz = shape
    lx, ly, zbot, ztop = GRAV_EXTENT
    grid = Grid.from_edges(
        x=np.linspace(0.0, lx, nx + 1),
        y=np.linspace(0.0, ly, ny + 1),
        z=np.linspace(zbot, ztop, nz + 1),
    )
    sx, sy = np.meshgrid(grid.centers["x"], grid.centers["y"], indexing="ij")
    stations = np.column_stack([sx.ravel(), sy.ravel(), np.zeros(sx.size)])
    return grid, stations


def traveltime_problem(shape: tuple[int, int, int]):
    """Return ``(grid, sources, receivers)``: all pairs between a left and a right borehole."""
    from bayesjoint.grid import Grid

    n_cells, n_src, n_rec = shape
    grid = Grid.from_edges(
        x=np.linspace(0.0, TT_EXTENT, n_cells + 1), z=np.linspace(-TT_EXTENT, 0.0, n_cells + 1)
    )
    # Depths deliberately off the cell edges (generic rays); the grid axis order is (x, z).
    z_src = np.linspace(-0.99 * TT_EXTENT, -0.01 * TT_EXTENT, n_src) + 0.123
    z_rec = np.linspace(-0.98 * TT_EXTENT, -0.02 * TT_EXTENT, n_rec) - 0.321
    src = np.column_stack([np.zeros(n_src), z_src])
    rec = np.column_stack([np.full(n_rec, TT_EXTENT), z_rec])
    return grid, np.repeat(src, n_rec, axis=0), np.tile(rec, (n_src, 1))


# ------------------------------------------------------------------------------------------------
# builders (each returns a zero-argument callable producing the matrix, and a tiny warm-up one)
# ------------------------------------------------------------------------------------------------
def _bayesjoint_gravity(shape):
    from bayesjoint.physics import gravity_sensitivity

    grid, stations = gravity_problem(shape)
    return lambda: gravity_sensitivity(grid, stations)


def _bayesjoint_traveltime(shape):
    from bayesjoint.physics import ray_lengths

    grid, src, rec = traveltime_problem(shape)
    return lambda: ray_lengths(grid, src, rec)


def _harmonica_columns(shape, parallel: bool = True):
    import harmonica

    grid, stations = gravity_problem(shape)
    bounds = grid.cell_bounds()  # (west, east, south, north, bottom, top) per prism, C order
    coords = (stations[:, 0], stations[:, 1], stations[:, 2])

    def build():
        out = np.empty((stations.shape[0], bounds.shape[0]))
        for j in range(bounds.shape[0]):
            out[:, j] = harmonica.prism_gravity(
                coords, bounds[j], 1.0, field="g_z", parallel=parallel
            )
        return out

    return build


_CHOCLO_KERNEL = None


def _choclo_kernel():
    """Compile (once) a numba-parallel jacobian filler over choclo's ``gravity_u``."""
    global _CHOCLO_KERNEL
    if _CHOCLO_KERNEL is None:
        import choclo.prism
        import numba

        gravity_u = choclo.prism.gravity_u

        @numba.jit(nopython=True, parallel=True)
        def fill(e, n, u, prisms, out):
            for i in numba.prange(e.size):
                for j in range(prisms.shape[0]):
                    out[i, j] = gravity_u(
                        e[i],
                        n[i],
                        u[i],
                        prisms[j, 0],
                        prisms[j, 1],
                        prisms[j, 2],
                        prisms[j, 3],
                        prisms[j, 4],
                        prisms[j, 5],
                        1.0,
                    )

        _CHOCLO_KERNEL = fill
    return _CHOCLO_KERNEL


def _choclo_jacobian(shape):
    grid, stations = gravity_problem(shape)
    bounds = np.ascontiguousarray(grid.cell_bounds())
    e, n, u = (np.ascontiguousarray(stations[:, k]) for k in range(3))
    fill = _choclo_kernel()

    def build():
        out = np.empty((stations.shape[0], bounds.shape[0]))
        fill(e, n, u, bounds, out)
        out *= -1e5  # choclo gives the upward component in m/s²; make it downward mGal
        return out

    return build


def _simpeg_gravity(shape):
    from discretize import TensorMesh
    from simpeg import maps
    from simpeg.potential_fields import gravity

    grid, stations = gravity_problem(shape)
    nx, ny, nz = shape
    mesh = TensorMesh(
        [np.diff(grid.edges[a]) for a in "xyz"], origin=[grid.edges[a][0] for a in "xyz"]
    )
    # discretize numbers cells with x fastest; bayesjoint with z fastest (C order over x, y, z).
    i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    perm = (i + nx * (j + ny * k)).ravel()

    def build():
        rx = gravity.receivers.Point(stations, components="gz")
        survey = gravity.survey.Survey(gravity.sources.SourceField(receiver_list=[rx]))
        sim = gravity.simulation.Simulation3DIntegral(
            mesh,
            survey=survey,
            rhoMap=maps.IdentityMap(nP=mesh.n_cells),
            active_cells=np.ones(mesh.n_cells, dtype=bool),
            store_sensitivities="ram",
            sensitivity_dtype=np.float64,  # SimPEG defaults to float32
            engine="choclo",
        )
        return np.asarray(sim.G)

    return build, perm


BUILDERS: dict[str, Callable] = {
    "bayesjoint_gravity": _bayesjoint_gravity,
    "bayesjoint_traveltime": _bayesjoint_traveltime,
    "harmonica_columns": _harmonica_columns,
    "harmonica_columns_serial": lambda s: _harmonica_columns(s, parallel=False),
    "choclo_jacobian": _choclo_jacobian,
    "simpeg_choclo": lambda s: _simpeg_gravity(s)[0],
}
# Tiny problems used to trigger JIT compilation (numba) before timing.
WARMUP = {"gravity": (2, 2, 2), "traveltime": (4, 2, 2)}


# ------------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------------
def _describe(mat: Any) -> dict[str, Any]:
    import scipy.sparse as sp

    if sp.issparse(mat):
        nbytes = mat.data.nbytes + mat.indices.nbytes + mat.indptr.nbytes
        return {
            "shape": list(mat.shape),
            "format": mat.format,
            "nnz": int(mat.nnz),
            "dtype": str(mat.dtype),
            "result_mib": nbytes / MIB,
        }
    return {
        "shape": list(mat.shape),
        "format": "dense",
        "dtype": str(mat.dtype),
        "result_mib": mat.nbytes / MIB,
    }


def measure(case: str, size_key: str, repeat: int) -> dict[str, Any]:
    """Time ``case`` (best of ``repeat``) and measure its peak memory."""
    kind = "traveltime" if case.endswith("traveltime") else "gravity"
    shape = SIZES[size_key][kind]
    factory = BUILDERS[case]
    t0 = time.perf_counter()
    factory(WARMUP[kind])()  # JIT compilation / first-import costs, on a tiny problem
    warmup_s = time.perf_counter() - t0
    build = factory(shape)

    gc.collect()
    rss_before = rss_mib()[1]
    times, cpu_times = [], []
    mat = None
    for _ in range(repeat):
        mat = None  # free the previous result so peaks do not stack
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        mat = build()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    rss_after = rss_mib()[1]
    info = _describe(mat)
    mat = None
    gc.collect()

    tracemalloc.start()
    mat = build()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mat = None
    gc.collect()

    out = {
        "time_s": min(times),
        "times_s": times,
        # CPU time of the process (all threads) during the fastest run.
        "cpu_s": cpu_times[times.index(min(times))],
        "warmup_s": warmup_s,
        "tracemalloc_peak_mib": traced_peak / MIB,
        "rss_peak_delta_mib": (None if rss_before is None else max(0.0, rss_after - rss_before)),
        "rss_peak_mib": rss_after,
    }
    out.update(info)
    return out


def agreement(size_key: str, with_simpeg: bool) -> dict[str, Any]:
    """Compare the peers' gravity matrices with bayesjoint's, and a single prism at edge cases."""
    import harmonica

    from bayesjoint.physics import gravity_sensitivity, prism_gz

    shape = SIZES[size_key]["gravity"]
    grid, stations = gravity_problem(shape)
    a_bj = gravity_sensitivity(grid, stations)
    scale = np.abs(a_bj).max()

    def compare(other: np.ndarray) -> dict[str, float]:
        diff = np.abs(other - a_bj)
        return {
            "max_abs_diff": float(diff.max()),
            "max_rel_diff_normwise": float(diff.max() / scale),
            "max_rel_diff_elementwise": float((diff / np.abs(a_bj)).max()),
        }

    res: dict[str, Any] = {
        "harmonica_columns": compare(_harmonica_columns(shape)()),
        "choclo_jacobian": compare(_choclo_jacobian(shape)()),
    }
    if with_simpeg:
        build, perm = _simpeg_gravity(shape)
        res["simpeg_choclo"] = compare(-build()[:, perm] / 1000.0)  # upward g/cc -> downward kg/m³

    # One prism, 1000 kg/m³, at points above, beside, on its top face, edge and corner, far away.
    bounds = np.array([-50.0, 50.0, -40.0, 60.0, -150.0, -50.0])
    pts = np.array(
        [
            [0.0, 0.0, 0.0],
            [200.0, -130.0, 0.0],
            [10.0, 5.0, -50.0],
            [50.0, 5.0, -50.0],
            [50.0, 60.0, -50.0],
            [3000.0, 2000.0, 0.0],
        ]
    )
    g_bj = prism_gz(bounds, 1000.0, pts)
    g_hm = np.array(
        [harmonica.prism_gravity(tuple(p), bounds, 1000.0, field="g_z") for p in pts]
    ).ravel()
    res["single_prism"] = {
        "points": pts.tolist(),
        "bayesjoint_mgal": g_bj.tolist(),
        "harmonica_mgal": g_hm.tolist(),
        "max_rel_diff": float(np.max(np.abs(g_hm - g_bj) / np.abs(g_bj))),
    }
    return res


# ------------------------------------------------------------------------------------------------
# orchestration
# ------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    info = _machine.machine_info(
        ("numpy", "scipy", "bayesjoint", "numba", "harmonica", "choclo", "simpeg")
    )
    if hasattr(os, "getloadavg"):
        info["load_average"] = list(os.getloadavg())
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        info["numba_threads"] = None
    return info


def _peer_status(with_simpeg: bool) -> tuple[str | None, str | None]:
    """Return (reason harmonica is unavailable or None, reason SimPEG is unavailable or None)."""
    peer_reason = simpeg_reason = None
    try:
        import choclo.prism  # noqa: F401
        import harmonica  # noqa: F401
        import numba  # noqa: F401
    except Exception as exc:
        peer_reason = (
            f"harmonica not importable ({type(exc).__name__}: {exc}); pip install harmonica"
        )
    if not with_simpeg:
        simpeg_reason = "disabled (--no-simpeg)"
    elif peer_reason is not None:
        simpeg_reason = "needs harmonica's choclo/numba stack too"
    else:
        try:
            import discretize  # noqa: F401
            import simpeg  # noqa: F401
        except Exception as exc:
            simpeg_reason = f"simpeg not importable ({type(exc).__name__}: {exc})"
    return peer_reason, simpeg_reason


def _run_isolated(argv: list[str]) -> Any:
    """Run this script with ``argv`` in a fresh interpreter and return its JSON output."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def run(args: argparse.Namespace) -> dict[str, Any]:
    size_key = "quick" if args.quick else "full"
    isolate = args.isolation == "subprocess"
    peer_reason, simpeg_reason = _peer_status(not args.no_simpeg)
    if args.no_peer:
        peer_reason = "disabled (--no-peer)"
        simpeg_reason = simpeg_reason or "disabled (--no-peer)"

    def case(name: str) -> dict[str, Any]:
        if isolate:
            argv = ["--worker", name, "--repeat", str(args.repeat)]
            return _run_isolated([*argv, "--quick"] if args.quick else argv)
        return measure(name, size_key, args.repeat)

    nx, ny, nz = SIZES[size_key]["gravity"]
    n_cells, n_src, n_rec = SIZES[size_key]["traveltime"]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": size_key,
        "repeat": args.repeat,
        "isolation": args.isolation,
        "command": " ".join(["python", "benchmarks/physics.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "gravity": {
            "problem": {
                "prisms": [nx, ny, nz],
                "n_prisms": nx * ny * nz,
                "n_stations": nx * ny,
                "extent_m": dict(zip(("x", "y", "z_bottom", "z_top"), GRAV_EXTENT, strict=True)),
                "dtype": "float64",
            },
            "bayesjoint": case("bayesjoint_gravity"),
        },
        "traveltime": {
            "problem": {
                "cells": [n_cells, n_cells],
                "n_rays": n_src * n_rec,
                "geometry": f"crosshole, {n_src} sources x {n_rec} receivers, {TT_EXTENT} m",
            },
            "bayesjoint": case("bayesjoint_traveltime"),
        },
        "peer": None,
    }
    if peer_reason is not None:
        result["peer_reason"] = peer_reason
    else:
        peers = {name: case(name) for name in PEER_CASES}
        bj_time = result["gravity"]["bayesjoint"]["time_s"]
        peer: dict[str, Any] = {
            "name": "harmonica",
            "version": package_version("harmonica"),
            "cases": peers,
            "time_ratio_bayesjoint_over_peer": {k: bj_time / v["time_s"] for k, v in peers.items()},
        }
        with_simpeg = simpeg_reason is None
        if with_simpeg:
            peer["simpeg"] = case("simpeg_choclo")
            peer["time_ratio_bayesjoint_over_simpeg"] = bj_time / peer["simpeg"]["time_s"]
        else:
            peer["simpeg"] = None
            peer["simpeg_reason"] = simpeg_reason
        if isolate:
            check = ["--worker", "agreement"] + ([] if with_simpeg else ["--no-simpeg"])
            peer["agreement"] = _run_isolated([*check, "--quick"] if args.quick else check)
        else:
            peer["agreement"] = agreement(size_key, with_simpeg)
        fastest = min(peers, key=lambda k: peers[k]["time_s"])
        peer["fastest_peer_case"] = fastest
        peer["time_ratio_bayesjoint_over_fastest_peer"] = bj_time / peers[fastest]["time_s"]
        result["peer"] = peer
    if hasattr(os, "getloadavg"):
        # Other processes competing for the cores make timings noisy; recorded for the reader.
        result["machine"]["load_average_end"] = list(os.getloadavg())
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    parser.add_argument(
        "--isolation",
        choices=("subprocess", "inprocess"),
        default=None,
        help="fresh interpreter per case (per-case peak RSS; default for full runs) or one "
        "process (default with --quick)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip harmonica/choclo/SimPEG")
    parser.add_argument("--no-simpeg", action="store_true", help="skip SimPEG only")
    parser.add_argument("--worker", choices=[*BUILDERS, "agreement"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.isolation is None:
        args.isolation = "inprocess" if args.quick else "subprocess"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size_key = "quick" if args.quick else "full"

    def compute() -> dict[str, Any]:
        if args.worker == "agreement":
            return agreement(size_key, not args.no_simpeg)
        if args.worker is not None:
            return measure(args.worker, size_key, args.repeat)
        return run(args)

    return _machine.print_json(compute)


if __name__ == "__main__":
    sys.exit(main())
