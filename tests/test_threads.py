"""Chains and BLAS threads: the plan, the limit (inherited by forked chains), the provenance."""

from __future__ import annotations

import multiprocessing

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from bayesjoint.inference.threads import (
    available_cpus,
    blas_limit,
    chains_running,
    jax_threads_running,
    parallel_plan,
    pymc_default_start_method,
    safe_start_method,
    sampling_plan,
)


def _blas_threads() -> list[int]:
    return [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]


@pytest.mark.parametrize(
    ("chains", "cores", "cpus", "expected"),
    [
        (4, None, 2, (2, 1)),  # PyMC's default would run the four one after the other
        (4, None, 8, (4, 2)),  # two CPUs left to each chain's BLAS
        (1, None, 8, (1, 8)),
        (4, 1, 8, (1, 8)),  # the caller's cores are kept
        (2, 6, 8, (6, 4)),  # more cores than chains: BLAS shares by the chains that run
        (3, None, 1, (1, 1)),
    ],
)
def test_parallel_plan_gives_one_cpu_per_running_chain_and_the_rest_to_blas(
    chains, cores, cpus, expected
):
    running, blas = parallel_plan(chains, cores, cpus=cpus)
    # brute force: the chains that run at once, and the CPUs each one leaves to BLAS
    at_once = cores if cores is not None else min(chains, cpus)
    assert (running, blas) == expected == (at_once, max(1, cpus // min(at_once, chains)))


def test_available_cpus_is_the_affinity_mask():
    import os

    assert available_cpus() == len(os.sched_getaffinity(0))


def _report(queue):
    queue.put(_blas_threads())


def test_blas_limit_covers_forked_chains_then_restores():
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with blas_limit(1) as limit:
            inside = _blas_threads()
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            child = context.Process(target=_report, args=(queue,))
            child.start()
            in_child = queue.get(timeout=60)
            child.join(timeout=60)
        after = _blas_threads()
    assert limit == {"blas_threads": 1}
    assert inside and max(inside) == 1 and in_child and max(in_child) == 1
    # negative control: outside the block the pools are as they were
    assert max(before) == max(after[: len(before)]) == 2


_FRESH = """
import json, numpy as np, pytensor, pytensor.tensor as pt
from threadpoolctl import threadpool_info, threadpool_limits
from bayesjoint.inference.threads import blas_limit
def pools():
    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
out = {"before": pools()}
with threadpool_limits(limits=2, user_api="blas"):
    with blas_limit(1):
        a, x = pt.dmatrix("a"), pt.dvector("x")
        f = pytensor.function([a, x], pt.dot(a, x))  # compiled inside: links pytensor's BLAS
        f(np.ones((300, 300)), np.ones(300))
        out["inside"] = pools()
    out["after"] = pools()
print(json.dumps(out))
"""


def test_blas_limit_covers_the_blas_a_model_compiled_inside_the_block_links():
    import json
    import os
    import subprocess
    import sys

    import pytensor

    if "-l" not in str(pytensor.config.blas__ldflags):  # pragma: no cover - numpy's BLAS only
        pytest.skip("pytensor links no BLAS library of its own here")
    # the pools at their default size (one thread per CPU): a caller's OPENBLAS_NUM_THREADS=1
    # would make the negative control below prove nothing
    limits = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in limits}
    run = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, timeout=300, check=True,
        env=env,
    )  # fmt: skip
    out = json.loads(run.stdout.strip().splitlines()[-1])
    new = set(out["inside"]) - set(out["before"])
    assert new, "pytensor's BLAS was loaded before the block: the check would prove nothing"
    assert all(out["inside"][p] == 1 for p in out["inside"])
    # negative control: once the block ends, that library's pool is back at the default size
    # (one thread per CPU, as numpy's own pool was before the block)
    default = max(out["before"].values())
    assert default == available_cpus() > 1
    assert all(out["after"][p] == default for p in new)


def test_blas_limit_never_raises_a_smaller_pool():
    with threadpool_limits(limits=1, user_api="blas"), blas_limit(4) as limit:
        assert limit == {"blas_threads": 1}
        assert max(_blas_threads()) == 1


def test_sample_records_the_cores_and_blas_threads_it_ran_with(problem):
    idata = problem.sample(
        method="nuts-plain", draws=20, tune=20, chains=2, random_seed=3, progressbar=False
    )
    attrs = idata.posterior.attrs
    cores, blas = parallel_plan(2, None)
    assert int(attrs["cores"]) == cores == min(2, available_cpus())
    assert int(attrs["blas_threads"]) == blas
    # an explicit cores is kept
    idata = problem.sample(
        method="nuts-plain", draws=20, tune=20, chains=2, cores=1, random_seed=3, progressbar=False
    )
    assert int(idata.posterior.attrs["cores"]) == 1


def test_chains_running_applies_the_plan_in_force_and_nothing_without_one():
    with threadpool_limits(limits=2, user_api="blas"):
        with chains_running() as none:
            assert none == {} and max(_blas_threads()) == 2  # no plan: no limit
        with sampling_plan(1):
            assert max(_blas_threads()) == 2  # the plan alone limits nothing
            with chains_running() as limit:
                assert limit == {"blas_threads": 1} and max(_blas_threads()) == 1
            assert max(_blas_threads()) == 2
        with chains_running():
            assert max(_blas_threads()) == 2  # the plan ended with its block


def test_only_the_chains_run_with_the_limited_blas_pool(problem, monkeypatch):
    import bayesjoint.inference.nuts as nuts

    seen: dict[str, int] = {}
    real = nuts.laplace_approximation

    def spy(*args, **kwargs):
        seen["laplace"] = max(_blas_threads())
        return real(*args, **kwargs)

    def callback(trace, draw):
        seen.setdefault("chains", max(_blas_threads()))

    monkeypatch.setattr(nuts, "laplace_approximation", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        idata = problem.sample(
            method="nuts", draws=10, tune=10, chains=2, cores=2, random_seed=5,
            progressbar=False, callback=callback,
        )  # fmt: skip
    planned = parallel_plan(2, 2)[1]
    assert int(idata.posterior.attrs["blas_threads"]) == planned
    assert seen["chains"] == min(2, planned)  # the sampler's process while chains run
    assert seen["laplace"] == 2  # the MAP and mass matrix before them keep the pool


def test_pymc_default_start_method_is_the_one_pymc_picks(monkeypatch):
    import platform

    from pymc.sampling.parallel import _initialize_multiprocessing_context

    def pymcs() -> str:
        return _initialize_multiprocessing_context(None, quiet=True).get_start_method()

    assert pymc_default_start_method() == pymcs()  # this machine, as it is
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    for processor, expected in (("arm", "fork"), ("i386", "forkserver")):
        monkeypatch.setattr(platform, "processor", lambda p=processor: p)
        assert pymc_default_start_method() == pymcs() == expected


def test_safe_start_method_switches_to_forkserver_only_when_jax_threads_would_be_forked(
    monkeypatch,
):
    import sys
    import types

    from bayesjoint.inference import threads

    bridge = types.ModuleType("jax._src.xla_bridge")
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", bridge)
    monkeypatch.setattr(threads, "pymc_default_start_method", lambda: "fork")
    bridge._at_fork_handler_installed = False  # imported, nothing computed: no thread yet
    assert not jax_threads_running() and safe_start_method(2, {}) == {}
    bridge._at_fork_handler_installed = True
    assert jax_threads_running()
    assert safe_start_method(2, {}) == {"mp_ctx": "forkserver"}
    # nothing forks: one chain at a time or one chain in all, or another sampler
    assert safe_start_method(1, {}) == safe_start_method(2, {}, chains=1) == {}
    assert safe_start_method(2, {"nuts_sampler": "nutpie"}) == {}
    # a caller's mp_ctx is kept, even None (PyMC's default)
    assert safe_start_method(2, {"mp_ctx": "fork"}) == safe_start_method(2, {"mp_ctx": None}) == {}
    # cores=None is PyMC's default, half the CPU count: parallel from 4 CPUs on
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 4)
    assert safe_start_method(None, {}) == {"mp_ctx": "forkserver"}
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 3)
    assert safe_start_method(None, {}) == {}
    # the BLAS plan reaches chains that are not forked through PyMC's blas_cores
    with sampling_plan(3):
        assert safe_start_method(2, {}, chains=4) == {"mp_ctx": "forkserver", "blas_cores": 6}
        assert safe_start_method(4, {}, chains=2)["blas_cores"] == 6
        assert "blas_cores" not in safe_start_method(2, {"blas_cores": 8}, chains=4)
    # a start method that does not fork is PyMC's own choice, kept
    monkeypatch.setattr(threads, "pymc_default_start_method", lambda: "spawn")
    assert safe_start_method(2, {}) == {}
    monkeypatch.delitem(sys.modules, "jax._src.xla_bridge")
    assert not jax_threads_running()


_AFTER_JAX = """
import json, warnings
import numpy as np
import bayesjoint as bj

def main():
    import jax.numpy as jnp
    jnp.ones(3).sum().block_until_ready()  # JAX's runtime and its threads start here
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    obs = bj.Modality("a", bj.physics.Linear(np.eye(2), input="x"), [0.5, -0.2],
                      bj.noise.Gaussian(0.5))
    problem = bj.JointInversion(latent=[x], modalities=[obs])
    out = {}
    for name, extra in (("fork", {"mp_ctx": "fork"}), ("default", {})):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            # nuts: its step holds the model's kept density-and-gradient function, pickled
            # to a forkserver's chains
            idata = problem.sample(method="nuts", draws=30, tune=30, chains=2, cores=2,
                                   random_seed=5, progressbar=False, **extra)
        out[name] = {
            "fork_warnings": sum("os.fork()" in str(w.message) for w in seen),
            "x": idata.posterior["x"].values.tolist(),
            "route": idata.posterior.attrs["route"],
        }
    print(json.dumps(out))

if __name__ == "__main__":
    main()
"""


def test_chains_after_jax_start_without_forking_its_threads_and_draw_the_same(tmp_path):
    import json
    import subprocess
    import sys

    pytest.importorskip("jax")
    script = tmp_path / "after_jax.py"  # forkserver re-imports the main module: a real file
    script.write_text(_AFTER_JAX)
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=True,
        cwd=tmp_path,
    )  # fmt: skip
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # negative control: forked explicitly, JAX warns that the chains may hang
    assert out["fork"]["fork_warnings"] >= 1
    assert out["default"]["fork_warnings"] == 0
    assert out["fork"]["route"] == out["default"]["route"] == "nuts"
    assert "the chains start from a forkserver" in run.stderr
    # the start method changes where the chains run, not what they draw
    assert out["default"]["x"] == out["fork"]["x"]
