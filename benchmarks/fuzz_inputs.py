"""Fuzz the public constructors and ``sample()`` with bad and good input; count each outcome.

Every case is one argument of one constructor (or of ``sample()``) set to a value from a pool
of bad values (strings, bytes, None, NaN/inf, zero and negative numbers, complex numbers,
masked arrays, ragged lists, booleans, fractional counts, huge shapes, names netCDF refuses,
duplicate dims, typos of keyword names, ...) or good ones, the other arguments valid. Each case
is run as a user would: construct; if accepted, build the smallest problem around the object,
sample a few draws (the exact route where it applies), save and load. Outcomes:

- ``clean_refusal``: a ValueError/TypeError whose message names the object (class, or the
  modality/parameter/field/coupling name, or the argument);
- ``raw_message``: a ValueError/TypeError that names none of them (e.g. numpy's
  ``could not convert string to float: 'abc'``);
- ``works``: a valid input that went through construct, sample, save, load;
- ``wrongly_accepted``: an invalid input that went through (silently wrong);
- ``failed_later``: accepted at construction, then failed while building the model, sampling,
  saving or loading (the run thrown away);
- ``crash``: any other exception at construction.

Prints ONE JSON object: the counts, and the cases of every outcome but ``clean_refusal`` and
``works`` (label and message). ``--quick`` skips the sample/save/load stage of valid inputs
(seconds instead of minutes); ``--show`` prints one line per case to stderr.

Usage::

    python benchmarks/fuzz_inputs.py           # every case, end to end
    python benchmarks/fuzz_inputs.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "bayesjoint-fuzz-inputs/1"
SEED = 20261201


@dataclass
class Case:
    """One input: ``make()`` constructs the object, ``use(obj)`` runs it end to end."""

    label: str
    make: Callable[[], Any]
    valid: bool
    names: tuple[str, ...]
    use: Callable[[Any], Any] | None = None
    meta: dict = field(default_factory=dict)


# -- value pools -----------------------------------------------------------------------------------
def _masked(n: int = 3) -> np.ma.MaskedArray:
    return np.ma.masked_array(np.arange(float(n)), mask=[i == 1 for i in range(n)])


def _pools(n: int = 3) -> dict[str, list[tuple[str, Any]]]:
    """Named bad values per kind of argument."""
    junk = [
        ("str", "abc"),
        ("bytes", b"1"),
        ("None", None),
        ("dict", {"a": 1}),
        ("object", object()),
        ("complex", 1 + 2j),
        ("np_complex", np.complex128(1j)),
        ("bool", True),
        ("ragged", [[1.0], [1.0, 2.0]]),
        ("str_list", ["a", "b", "c"][:n]),
        ("mixed_list", [1.0, "a", 2.0][:n]),
        ("empty_list", []),
    ]
    nonfinite = [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)]
    return {
        "junk": junk,
        "nonfinite": nonfinite,
        "nonpositive": [("zero", 0.0), ("negative", -1.0)],
        "array_junk": [
            ("masked", _masked(n)),
            ("complex_array", np.arange(n) + 1j),
            ("nan_array", np.array([1.0, np.nan, 2.0])[:n]),
            ("object_array", np.array(["1", "x", "2"][:n], dtype=object)),
            ("ragged", [[1.0], [1.0, 2.0]]),
            ("str", "abc"),
            ("None", None),
            ("str_list", ["a", "b", "c"][:n]),
            ("complex_list", [1j, 2.0, 3.0][:n]),
        ],
        "count": [
            ("zero", 0),
            ("negative", -3),
            ("fraction", 5.7),
            ("nan", np.nan),
            ("str", "4"),
            ("None", None),
            ("bool", True),
            ("complex", 2 + 0j),
        ],
        "name": [
            ("empty", ""),
            ("slash", "x/m"),
            ("space", "a b"),
            ("keyword", "class"),
            ("leading_digit", "1x"),
            ("int", 1),
            ("bytes", b"x"),
            ("None", None),
        ],
        "units": [
            ("np_float32", np.float32(1)),
            ("bytes", b"m"),
            ("int", 1),
            ("list", ["m"]),
        ],
        "dims": [
            ("duplicate", ("d", "d")),
            ("slash", ("x/m",)),
            ("empty", ("",)),
            ("int", (1,)),
            ("str_slash", "x/m"),
        ],
    }


# -- end-to-end runs -------------------------------------------------------------------------------
def _quiet() -> contextlib.AbstractContextManager:
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def run_problem(problem: Any, **sample_kwargs: Any) -> None:
    """Sample a few draws, save and load; raise whatever fails."""
    import bayesjoint as bj

    kwargs = {"draws": 4, "tune": 4, "chains": 1, "random_seed": SEED, "progressbar": False}
    kwargs.update(sample_kwargs)
    idata = problem.sample(**kwargs)
    with tempfile.TemporaryDirectory(prefix="bj_fuzz_") as folder:
        path = os.path.join(folder, "run.nc")
        bj.save(idata, path)
        back = bj.load(path)
    assert set(back.groups()) == set(idata.groups())


def _param(shape=3, prior=None, **kw):
    import bayesjoint as bj

    return bj.Parameter("x", shape=shape, prior=prior or bj.priors.Normal(0.0, 1.0), **kw)


def _modality(n=3, **kw):
    import bayesjoint as bj

    args = {
        "physics": bj.physics.Linear(np.eye(n), input="x"),
        "data": np.linspace(0.0, 1.0, n),
        "noise": bj.noise.Gaussian(0.5),
    }
    args.update(kw)
    return bj.Modality("grav", **args)


def _problem_with_param(param):
    import bayesjoint as bj

    n = param.size
    mod = _modality(n=n, physics=bj.physics.Linear(np.eye(n), input=param.name))
    if mod.data.shape != param.shape and len(param.shape) != 1:
        mod = bj.Modality(
            "grav",
            physics=bj.physics.Linear(np.eye(n), input=param.name),
            data=np.zeros(n),
            noise=bj.noise.Gaussian(0.5),
        )
    return bj.JointInversion([param], [mod])


def _use_param(param):
    run_problem(_problem_with_param(param))


def _use_prior(prior):
    _use_param(_param(shape=3, prior=prior))


def _use_modality(mod):
    import bayesjoint as bj

    n = mod.n_data
    run_problem(bj.JointInversion([_param(shape=n)], [mod]))


def _use_noise(noise):
    _use_modality(_modality(noise=noise))


def _use_physics(phys):
    _use_modality(_modality(physics=phys))


def _use_grid(grid):
    import bayesjoint as bj

    field_ = bj.Field("rho", grid, prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality(
        "grav",
        physics=bj.physics.Linear(np.eye(grid.size), input="rho"),
        data=np.zeros(grid.size),
        noise=bj.noise.Gaussian(0.5),
    )
    run_problem(bj.JointInversion([field_], [mod]))


def _use_field(field_):
    import bayesjoint as bj

    n = field_.size
    mod = bj.Modality(
        "grav",
        physics=bj.physics.Linear(np.eye(n), input=field_.name),
        data=np.zeros(n),
        noise=bj.noise.Gaussian(0.5),
    )
    run_problem(bj.JointInversion([field_], [mod]))


def _use_observe(obs):
    import bayesjoint as bj

    mod = bj.Modality(
        "grav",
        physics=bj.physics.Linear(np.eye(6), input="x"),
        observe=obs,
        data=np.zeros(3),
        noise=bj.noise.Gaussian(0.5),
    )
    run_problem(bj.JointInversion([_param(shape=6)], [mod]))


def _use_gp(gp):
    """Attach the GP to a modality: its hyperparameters are checked there, naming it."""
    global _STAGE
    _STAGE = "construct"
    mod = _modality(data=np.linspace(0.0, 1.0, 3), discrepancy=gp)
    problem = bj_joint([_param()], [mod])
    _STAGE = "run"
    run_problem(problem, method="auto", draws=4, tune=4)


def bj_joint(latent, modalities):
    import bayesjoint as bj

    return bj.JointInversion(latent, modalities)


_STAGE = "run"


def _use_sample(kwargs):
    import bayesjoint as bj

    problem = bj.JointInversion([_param()], [_modality()])
    run_problem(problem, **kwargs)


# -- the catalog -----------------------------------------------------------------------------------
def catalog() -> list[Case]:
    """Every case: (constructor, argument, value, valid?)."""
    import bayesjoint as bj

    pools = _pools()
    cases: list[Case] = []

    def add(label, make, valid, names, use=None):
        cases.append(Case(label, make, valid, tuple(names), use))

    def add_each(label, values, make, valid, names, use=None):
        """One case per ``(value_label, value)``: ``label.format(value_label)``, ``make(value)``."""
        for vlabel, value in values:
            add(label.format(vlabel), lambda v=value: make(v), valid, names, use)

    # priors: scalar parameters
    prior_args = {
        "Normal": (bj.priors.Normal, {"mu": 0.0, "sigma": 1.0}, {"sigma": "positive"}),
        "HalfNormal": (bj.priors.HalfNormal, {"sigma": 1.0}, {"sigma": "positive"}),
        "LogNormal": (bj.priors.LogNormal, {"mu": 0.0, "sigma": 1.0}, {"sigma": "positive"}),
        "Uniform": (bj.priors.Uniform, {"lower": -1.0, "upper": 2.0}, {}),
    }
    for cname, (cls, base, kinds) in prior_args.items():
        for arg in base:
            bad = pools["junk"] + pools["nonfinite"] + pools["array_junk"]
            if kinds.get(arg) == "positive":
                bad = bad + pools["nonpositive"]
            for vlabel, value in bad:
                kw = dict(base, **{arg: value})
                add(
                    f"priors.{cname}({arg}={vlabel})",
                    lambda cls=cls, kw=kw: cls(**kw),
                    False,
                    (cname, arg),
                    _use_prior,
                )
            for vlabel, value in [("float", 0.5), ("int", 2), ("np_float32", np.float32(0.25))]:
                kw = dict(base, **{arg: value})
                if cname == "Uniform":
                    kw = {"lower": -1.0, "upper": 2.0}
                    kw[arg] = value if arg == "upper" else -value
                add(
                    f"priors.{cname}({arg}={vlabel})",
                    lambda cls=cls, kw=kw: cls(**kw),
                    True,
                    (cname, arg),
                    _use_prior if cname in ("Normal",) else None,
                )
        # a prior whose array does not broadcast to the variable: refused when the Parameter
        # is built, naming the parameter
        if cname != "Uniform":
            kw = dict(base, sigma=np.ones(2))
            add(
                f"Parameter(prior={cname}(sigma of shape (2,)), shape=3)",
                lambda cls=cls, kw=kw: _param(shape=3, prior=cls(**kw)),
                False,
                ("Parameter", "'x'"),
                _use_param,
            )
    add(
        "Parameter(prior=Uniform(lower of shape (2,)), shape=3)",
        lambda: _param(shape=3, prior=bj.priors.Uniform(np.zeros(2), 1.0)),
        False,
        ("Parameter", "'x'"),
        _use_param,
    )
    lengths = [(k, v) for k, v in pools["junk"] if k != "dict"]  # a dict: lengths per axis
    for vlabel, value in lengths + pools["nonfinite"] + pools["nonpositive"]:
        add(
            f"priors.GaussianField(correlation_length={vlabel})",
            lambda v=value: bj.priors.GaussianField(1.0, v),
            False,
            ("GaussianField", "correlation_length"),
        )
        add(
            f"priors.GaussianField(sigma={vlabel})",
            lambda v=value: bj.priors.GaussianField(v, 2.0),
            False,
            ("GaussianField", "sigma"),
        )
    add_each(
        "priors.GaussianField(kernel={})",
        [("kernel_typo", "matern25"), ("kernel_int", 5)],
        lambda v: bj.priors.GaussianField(1.0, 2.0, kernel=v),
        False,
        ("GaussianField", "kernel"),
    )

    # Parameter
    add_each(
        "Parameter(name={})",
        pools["name"],
        lambda v: bj.Parameter(v, shape=3, prior=bj.priors.Normal()),
        False,
        ("Parameter",),
    )
    shapes_bad = pools["count"] + [
        ("huge", 10**10),
        ("tuple_fraction", (2.5,)),
        ("tuple_zero", (2, 0)),
        ("tuple_str", (3, "a")),
        ("str_shape", "abc"),
    ]
    add_each(
        "Parameter(shape={})",
        shapes_bad,
        lambda v: _param(shape=v),
        False,
        ("Parameter", "'x'", "shape"),
        _use_param,
    )
    add_each(
        "Parameter(shape={})",
        [("int", 3), ("tuple", (3,)), ("np_int", np.int64(3)), ("float3", 3.0)],
        lambda v: _param(shape=v),
        True,
        ("Parameter",),
        _use_param,
    )
    add_each(
        "Parameter(units={})",
        pools["units"],
        lambda v: _param(units=v),
        False,
        ("Parameter", "'x'", "units"),
        _use_param,
    )
    add("Parameter(units='m')", lambda: _param(units="m"), True, ("Parameter",), _use_param)
    for vlabel, value in pools["dims"]:
        shape = 2 if vlabel == "duplicate" else 3
        dims_v = value
        if vlabel == "duplicate":
            shape = (2, 2)
        add(
            f"Parameter(dims={vlabel})",
            lambda v=dims_v, s=shape: _param(shape=s, dims=v),
            False,
            ("Parameter", "'x'", "dims", "dimension"),
            _use_param,
        )
    add(
        "Parameter(dims=('obs_axis',))",
        lambda: _param(dims=("obs_axis",)),
        True,
        ("Parameter",),
        _use_param,
    )
    add_each(
        "Parameter(prior={})",
        pools["junk"][:5],
        lambda v: bj.Parameter("x", shape=3, prior=v),
        False,
        ("Parameter",),
    )

    # Grid
    add_each(
        "Grid(x={})",
        pools["junk"] + pools["array_junk"] + [("decreasing", [3.0, 2.0, 1.0])],
        lambda v: bj.Grid(x=v),
        False,
        ("Grid", "'x'"),
        _use_grid,
    )
    add_each(
        "Grid(axis name {})",
        [("slash", "x/m"), ("empty", ""), ("trailing_space", "x ")],
        lambda v: bj.Grid(**{v: np.arange(3.0)}),
        False,
        ("Grid", "axis", "dimension"),
        _use_grid,
    )
    add("Grid(x=arange(3))", lambda: bj.Grid(x=np.arange(3.0)), True, ("Grid",), _use_grid)

    # Field
    grid = bj.Grid(x=np.arange(3.0))
    add_each(
        "Field(name={})",
        pools["name"],
        lambda v: bj.Field(v, grid, prior=bj.priors.Normal()),
        False,
        ("Field",),
    )
    add_each(
        "Field(units={})",
        pools["units"],
        lambda v: bj.Field("rho", grid, prior=bj.priors.Normal(), units=v),
        False,
        ("Field", "'rho'", "units"),
        _use_field,
    )
    add_each(
        "Field(grid={})",
        pools["junk"][:5],
        lambda v: bj.Field("rho", v, prior=bj.priors.Normal()),
        False,
        ("Field",),
    )
    add(
        "Field(prior=Normal(sigma of shape (2,)))",
        lambda: bj.Field("rho", grid, prior=bj.priors.Normal(0.0, np.ones(2))),
        False,
        ("Field", "'rho'"),
        _use_field,
    )
    add(
        "Field(units='kg/m^3')",
        lambda: bj.Field("rho", grid, prior=bj.priors.Normal(), units="kg/m^3"),
        True,
        ("Field",),
        _use_field,
    )

    # noise
    for vlabel, value in (
        pools["junk"] + pools["nonfinite"] + pools["nonpositive"] + pools["array_junk"]
    ):
        add(
            f"noise.Gaussian(sd={vlabel})",
            lambda v=value: _modality(noise=bj.noise.Gaussian(v)),
            False,
            ("Gaussian", "noise", "sd", "'grav'"),
            _use_modality,
        )
        add(
            f"noise.StudentT(sd={vlabel})",
            lambda v=value: _modality(noise=bj.noise.StudentT(v)),
            False,
            ("StudentT", "noise", "sd", "'grav'"),
            _use_modality,
        )
    add_each(
        "noise.StudentT(nu={})",
        pools["junk"] + pools["nonfinite"] + pools["nonpositive"],
        lambda v: bj.noise.StudentT(0.5, nu=v),
        False,
        ("StudentT", "nu"),
        _use_noise,
    )
    for vlabel, value in pools["array_junk"] + [
        ("not_symmetric", np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]))
    ]:
        add(
            f"noise.Gaussian(cov={vlabel})",
            lambda v=value: _modality(noise=bj.noise.Gaussian(cov=v)),
            False,
            ("Gaussian", "noise", "cov", "'grav'"),
            _use_modality,
        )
    add_each(
        "noise.Gaussian(sd={})",
        [("float", 0.5), ("array", np.full(3, 0.5)), ("list", [0.5] * 3)],
        lambda v: _modality(noise=bj.noise.Gaussian(v)),
        True,
        ("Gaussian",),
        _use_modality,
    )
    add(
        "noise.Gaussian(cov=eye)",
        lambda: _modality(noise=bj.noise.Gaussian(cov=0.25 * np.eye(3))),
        True,
        ("Gaussian",),
        _use_modality,
    )

    # Modality
    for vlabel, value in pools["name"]:
        add(
            f"Modality(name={vlabel})",
            lambda v=value: bj.Modality(
                v, bj.physics.Linear(np.eye(3), "x"), np.zeros(3), bj.noise.Gaussian(1.0)
            ),
            False,
            ("Modality",),
        )
    add_each(
        "Modality(data={})",
        pools["array_junk"] + pools["junk"] + [("scalar", 1.0)],
        lambda v: _modality(data=v),
        False,
        ("modality", "'grav'", "data"),
        _use_modality,
    )
    add_each(
        "Modality(units={})",
        pools["units"],
        lambda v: _modality(units=v),
        False,
        ("modality", "'grav'", "units"),
        _use_modality,
    )
    for vlabel, value in pools["dims"]:
        if vlabel == "duplicate":
            make = lambda v=value: bj.Modality(  # noqa: E731
                "grav",
                bj.physics.Linear(np.eye(4), "x"),
                np.zeros((2, 2)),
                bj.noise.Gaussian(1.0),
                dims=v,
            )
            use = None
        else:
            make = lambda v=value: _modality(dims=v)  # noqa: E731
            use = _use_modality
        add(
            f"Modality(dims={vlabel})",
            make,
            False,
            ("modality", "'grav'", "dims", "dimension"),
            use,
        )
    for vlabel, value in [
        ("list", [0.0, 1.0, 2.0]),
        ("array", np.zeros(3)),
        ("int_array", np.arange(3)),
    ]:
        add(
            f"Modality(data={vlabel})",
            lambda v=value: _modality(data=v),
            True,
            ("modality",),
            _use_modality,
        )
    add(
        "Modality(units='mGal')",
        lambda: _modality(units="mGal"),
        True,
        ("modality",),
        _use_modality,
    )

    # physics.Linear
    add_each(
        "physics.Linear(matrix={})",
        pools["array_junk"] + pools["junk"],
        lambda v: bj.physics.Linear(v, input="x"),
        False,
        ("Linear", "matrix"),
        _use_physics,
    )
    add_each(
        "physics.Linear(matrix={})",
        [("complex", np.eye(3) + 0j), ("complex_imag", np.eye(3) * (1 + 1j))],
        lambda v: bj.physics.Linear(v, input="x"),
        False,
        ("Linear", "matrix"),
        _use_physics,
    )
    offsets = [(k, v) for k, v in pools["array_junk"] + pools["junk"][:5] if v is not None]
    add_each(
        "physics.Linear(offset={})",
        offsets,
        lambda v: bj.physics.Linear(np.eye(3), input="x", offset=v),
        False,
        ("Linear", "offset"),
        _use_physics,
    )
    add_each(
        "physics.Linear(input={})",
        [("int", 1), ("None", None), ("empty", ())],
        lambda v: bj.physics.Linear(np.eye(3), input=v),
        False,
        ("Linear", "input"),
        _use_physics,
    )
    add(
        "physics.Linear(matrix=eye)",
        lambda: bj.physics.Linear(2.0 * np.eye(3), input="x"),
        True,
        ("Linear",),
        _use_physics,
    )

    # physics with grids and stations
    g2 = bj.Grid(x=np.arange(4.0) * 10.0, z=-np.arange(3.0)[::-1] * 10.0 - 5.0)
    for vlabel, value in pools["array_junk"] + pools["junk"]:
        add(
            f"physics.Gravity(stations={vlabel})",
            lambda v=value: bj.physics.Gravity(g2, v),
            False,
            ("Gravity", "stations"),
        )
        add(
            f"physics.TravelTime(sources={vlabel})",
            lambda v=value: bj.physics.TravelTime(g2, v, [[30.0, -25.0]]),
            False,
            ("TravelTime", "sources"),
        )
    add_each(
        "physics.Gravity(grid={})",
        pools["junk"][:5],
        lambda v: bj.physics.Gravity(v, [[0.0, 0.0]]),
        False,
        ("Gravity", "grid"),
    )

    # observe
    add_each(
        "observe.SampleAt(indices={})",
        pools["array_junk"] + pools["junk"] + [("fraction", [0.5, 1.5])],
        lambda v: bj.observe.SampleAt(v),
        False,
        ("SampleAt", "indices"),
        _use_observe,
    )
    add_each(
        "observe.Decimate(factor={})",
        pools["count"],
        lambda v: bj.observe.Decimate(v),
        False,
        ("Decimate", "factor"),
        _use_observe,
    )
    add_each(
        "observe.Linear(matrix={})",
        pools["array_junk"] + pools["junk"],
        lambda v: bj.observe.Linear(v),
        False,
        ("Linear", "matrix", "observation"),
        _use_observe,
    )
    add(
        "observe.SampleAt([0, 2, 4])",
        lambda: bj.observe.SampleAt([0, 2, 4]),
        True,
        ("SampleAt",),
        _use_observe,
    )
    add("observe.Decimate(2)", lambda: bj.observe.Decimate(2), True, ("Decimate",), _use_observe)

    # couplings
    for vlabel, value in pools["junk"] + pools["nonfinite"] + pools["nonpositive"]:
        add(
            f"CrossGradient(strength={vlabel})",
            lambda v=value: bj.CrossGradient("a", "b", strength=v),
            False,
            ("CrossGradient", "strength"),
        )
        add(
            f"Petrophysical(scatter={vlabel})",
            lambda v=value: bj.Petrophysical("a", "b", "linear", scatter=v),
            False,
            ("Petrophysical", "scatter"),
        )
    for vlabel, value in pools["name"]:
        add(
            f"CrossGradient(name={vlabel})",
            lambda v=value: bj.CrossGradient("a", "b", name=v),
            vlabel == "None",
            ("CrossGradient",),
        )
    add_each(
        "Petrophysical(relation={})",
        [("typo", "lineer"), ("int", 3), ("None", None)],
        lambda v: bj.Petrophysical("a", "b", v, scatter=0.1),
        False,
        ("Petrophysical", "relation"),
    )

    # discrepancy
    for vlabel, value in pools["junk"] + pools["nonfinite"] + pools["nonpositive"]:
        add(
            f"discrepancy.GP(lengthscale={vlabel})",
            lambda v=value: bj.discrepancy.GP(lengthscale=v, amplitude=1.0),
            vlabel == "None",
            ("GP", "lengthscale"),
            _use_gp,
        )
    for vlabel, value in pools["count"]:
        add(
            f"discrepancy.GP(n_basis={vlabel})",
            lambda v=value: bj.discrepancy.GP(lengthscale=1.0, amplitude=1.0, n_basis=v),
            vlabel == "None",
            ("GP", "n_basis"),
            _use_gp,
        )

    # JointInversion
    for vlabel, value in pools["junk"][:6]:
        add(
            f"JointInversion(modalities={vlabel})",
            lambda v=value: bj.JointInversion([_param()], v),
            False,
            ("JointInversion", "modalit"),
        )
        add(
            f"JointInversion(latent={vlabel})",
            lambda v=value: bj.JointInversion(v, [_modality()]),
            False,
            ("JointInversion", "latent"),
        )

    # sample() arguments
    sample_bad: list[tuple[str, dict]] = []
    for arg in ("draws", "chains", "tune"):
        for vlabel, value in pools["count"]:
            if arg == "tune" and vlabel == "zero":
                continue  # tune=0 is valid
            sample_bad.append((f"{arg}={vlabel}", {arg: value}))
    sample_bad += [("draws=huge", {"draws": 10**12}), ("chains=huge", {"chains": 10**9})]
    for vlabel, value in [
        ("1.5", 1.5),
        ("0", 0.0),
        ("1", 1.0),
        ("-0.1", -0.1),
        ("nan", np.nan),
        ("str", "0.9"),
    ]:
        sample_bad.append((f"target_accept={vlabel}", {"target_accept": value}))
    for vlabel, value in [
        ("float", 1.7),
        ("str", "a"),
        ("negative", -1),
        ("list_str", ["a"]),
        ("complex", 1j),
    ]:
        sample_bad.append((f"random_seed={vlabel}", {"random_seed": value}))
    for vlabel, value in [("typo", "exactt"), ("int", 1), ("None", None)]:
        sample_bad.append((f"method={vlabel}", {"method": value}))
    for vlabel, value in [("zero", 0), ("negative", -1), ("fraction", 1.5)]:
        sample_bad.append((f"cores={vlabel}", {"cores": value}))
    for typo in ("draw", "chain", "tunes", "random_sed", "targetaccept"):
        sample_bad.append((f"{typo}=10 (typo)", {typo: 10}))
    names = (
        "sample",
        "draws",
        "chains",
        "tune",
        "target_accept",
        "random_seed",
        "method",
        "cores",
        "keyword",
    )
    for vlabel, kw in sample_bad:
        add(f"sample({vlabel})", lambda kw=kw: kw, False, names, _use_sample)
    for vlabel, kw in [
        ("seed=Generator", {"random_seed": np.random.default_rng(1)}),
        ("seed=SeedSequence", {"random_seed": np.random.SeedSequence(1)}),
        ("seed=np.int64", {"random_seed": np.int64(3)}),
        ("draws=5", {"draws": 5}),
        ("chains=2", {"chains": 2}),
        ("method=exact", {"method": "exact"}),
    ]:
        add(f"sample({vlabel})", lambda kw=kw: kw, True, names, _use_sample)
    return cases


# -- running ---------------------------------------------------------------------------------------
def classify(case: Case, end_to_end: bool = True) -> tuple[str, str]:
    """Return ``(outcome, message)`` for one case."""
    try:
        with _quiet():
            obj = case.make()
    except (ValueError, TypeError) as err:
        message = str(err)
        low = message.lower()
        named = any(n.lower() in low for n in case.names)
        return ("clean_refusal" if named else "raw_message"), message
    except Exception as err:
        return "crash", f"{type(err).__name__}: {err}"
    if case.use is None or (case.valid and not end_to_end):
        return ("works" if case.valid else "wrongly_accepted"), ""
    global _STAGE
    _STAGE = "run"
    try:
        with _quiet():
            case.use(obj)
    except (ValueError, TypeError) as err:
        message = str(err)
        low = message.lower()
        named = any(n.lower() in low for n in case.names)
        constructing = _STAGE == "construct"
        if not case.valid and named and ("sample" in case.names or constructing):
            # sample() arguments are checked when sample() is called: a named refusal there,
            # before any sampling, is the clean refusal
            return "clean_refusal", message
        return "failed_later", f"{type(err).__name__}: {message}"
    except Exception as err:
        if "sample" in case.names and not case.valid and isinstance(err, MemoryError):
            return "failed_later", f"MemoryError: {err}"
        return "failed_later", f"{type(err).__name__}: {err}"
    return ("works" if case.valid else "wrongly_accepted"), ""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no end-to-end run of valid input")
    parser.add_argument("--show", action="store_true", help="one line per case on stderr")
    args = parser.parse_args(argv)
    logging.getLogger("bayesjoint").setLevel(logging.WARNING)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    counts: Counter = Counter()
    details: dict[str, list[str]] = {}
    cases = catalog()
    for case in cases:
        outcome, message = classify(case, end_to_end=not args.quick)
        counts[outcome] += 1
        if outcome not in ("clean_refusal", "works"):
            details.setdefault(outcome, []).append(f"{case.label}: {message[:200]}")
        if args.show:
            print(f"{outcome:16s} {case.label}: {message[:160]}", file=sys.stderr)
    result = {
        "schema": SCHEMA,
        "inputs": len(cases),
        "counts": dict(sorted(counts.items())),
        "cases": details,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
