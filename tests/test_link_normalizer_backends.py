"""The link normalizers on pytensor's other backends: numba (nutpie) and JAX (numpyro).

The normalizer Ops of :mod:`bayesjoint.coupling.petrophysics` register numba and JAX
implementations, so ``sample(nuts_sampler="nutpie")`` compiles them to machine code (not a
Python callback in numba's object mode) and ``nuts_sampler="numpyro"`` is not refused for them.
Each implementation is checked against the Op's own numpy ``perform``; nutpie's draws of a
learned scatter against PyMC's sampler and the brute-force quadrature of
``tests/test_link_normalizer.py``. JAX is optional at run time (with numpyro) and part of the
``test`` extra; without it the JAX check skips, saying so (a failure under
``BAYESJOINT_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import importlib.util
import warnings

import arviz as az
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayesjoint.coupling.petrophysics import (
    _LOG_NORMALIZER,
    _JointLogNormalizer,
    _register_backends,
)

pytestmark = pytest.mark.slow

HAS_JAX = importlib.util.find_spec("jax") is not None


def _cases():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((9, 6))
    cov, mean = a @ a.T, rng.standard_normal(9)
    variances = rng.uniform(0.05, 1.0, 9)
    eigenvalues = rng.uniform(0.0, 3.0, 9)
    squares = rng.uniform(0.0, 2.0, 9) ** 2
    return cov, mean, variances, eigenvalues, squares


def _functions(mode: str):
    """Value and gradient of both Ops, compiled in ``mode``."""
    cov, mean, _, eigenvalues, squares = _cases()
    s, v = pt.dscalar("s"), pt.dvector("v")
    single = _LOG_NORMALIZER(s, eigenvalues, squares)
    out = {"single": pytensor.function([s], [single, pytensor.grad(single, s)], mode=mode)}
    for given in (0, 4):
        joint = _JointLogNormalizer(given)(v, mean, cov)[0]
        out[given] = pytensor.function([v], [joint, pytensor.grad(joint, v)], mode=mode)
    return out


def test_numba_implementations_match_the_ops_perform_without_object_mode():
    _register_backends()
    _, _, variances, _, _ = _cases()
    reference = _functions("FAST_RUN")
    with warnings.catch_warnings():
        # pytensor warns when an Op has no numba implementation and runs it in object mode
        warnings.filterwarnings("error", message=".*object mode.*")
        numba = _functions("NUMBA")
    for sigma in (0.03, 0.4, 2.0):
        np.testing.assert_allclose(numba["single"](sigma), reference["single"](sigma), rtol=1e-12)
    for given in (0, 4):
        got, want = numba[given](variances), reference[given](variances)
        # the same algebra with a general inverse of L instead of LAPACK's triangular one
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-8, atol=1e-12)
    # negative control: the conditional and the joint value differ, so the check sees `given`
    assert abs(float(numba[4](variances)[0]) - float(numba[0](variances)[0])) > 1.0


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install '.[test]' installs it)")
def test_jax_implementations_match_the_ops_perform_and_are_not_blockers():
    # In a fresh interpreter: once JAX has started its threads, a fork (PyMC's parallel chains
    # in later tests) warns that it may deadlock.
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    code = (
        f"import sys; sys.path.insert(0, {str(here)!r}); "
        "import test_link_normalizer_backends as t; t._jax_checks(); print('checked')"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=here
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("checked"), run.stderr[-4000:]


def _jax_checks() -> None:
    """The JAX implementations against the Ops' own code, and the model's logp through JAX."""
    from pytensor.link.jax.dispatch import jax_funcify

    from bayesjoint.inference.routes import _jax_blockers

    _register_backends()
    cov, mean, variances, eigenvalues, squares = _cases()
    for given in (0, 4):
        op = _JointLogNormalizer(given)
        node = op.make_node(variances, mean, cov)
        value, grad = jax_funcify(op, node=node)(variances, mean, cov)
        want = _functions("FAST_RUN")[given](variances)
        np.testing.assert_allclose(float(value), want[0], rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), want[1], rtol=1e-8, atol=1e-12)
    single = jax_funcify(_LOG_NORMALIZER)(np.asarray(0.4), eigenvalues, squares)
    np.testing.assert_allclose(float(single), _functions("FAST_RUN")["single"](0.4)[0])
    # numpyro's path: the model's log density through JAX, differentiated by jax.grad, on two
    # learned links sharing a field (both Ops), against pytensor's own compiled logp and dlogp
    import jax
    from pymc.sampling.jax import get_jaxified_logp
    from test_link_normalizer import _shared_link, _shared_problem

    model = _shared_problem([_shared_link("b"), _shared_link("c")]).model
    assert _jax_blockers(model) == []
    logp = get_jaxified_logp(model)
    point = model.initial_point()
    point["petrophysics_b_scatter_log__"] = np.log(0.05)
    values = [point[v.name] for v in model.value_vars]
    np.testing.assert_allclose(float(logp(values)), model.compile_logp()(point), rtol=1e-10)
    grad = np.concatenate([np.ravel(g) for g in jax.grad(logp)(values)])
    np.testing.assert_allclose(grad, model.compile_dlogp()(point), rtol=1e-8, atol=1e-10)


def _learned_problem():
    from test_link_normalizer import linked_problem

    return linked_problem()


def test_nutpie_samples_a_learned_scatter_like_the_pymc_sampler_and_the_quadrature():
    from test_link_normalizer import _quadrature

    problem, g = _learned_problem()
    exact, unnormalized = _quadrature(problem, g)  # 0.723 and 0.596
    means, mcses = {}, {}
    for sampler in ("nutpie", "pymc"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", message=".*object mode.*")
            idata = problem.sample(
                method="nuts-plain",
                nuts_sampler=sampler,
                draws=500,
                tune=500,
                chains=2,
                random_seed=11,
                progressbar=False,
            )
        draws = idata.posterior["petrophysics_b_scatter"]
        means[sampler] = float(draws.mean())
        mcses[sampler] = float(az.mcse(draws).to_array().item())
    # 4 MCSE: a false alarm has probability ~6e-5 per comparison for sound samplers
    joint = np.hypot(mcses["nutpie"], mcses["pymc"])
    assert abs(means["nutpie"] - means["pymc"]) < 4 * joint, (means, mcses)
    assert abs(means["nutpie"] - exact) < 4 * mcses["nutpie"], (means, exact, mcses)
    # negative control: nutpie's mean is far from the unnormalized model's
    assert abs(means["nutpie"] - unnormalized) > 4 * mcses["nutpie"], (means, unnormalized)
