"""Property-based fuzzing of every public constructor and of ``sample()``'s arguments.

Each generated input has exactly two acceptable outcomes:

- a ValueError or TypeError whose message names the object (its class, or the name the user gave
  it) — raised at construction, or by ``sample()`` before anything is compiled;
- an object that builds a model which samples a few draws, saves and loads (checked end to end
  on the constructors that make up a model: priors, noise, data, operators, sample arguments).

Any other exception, or a refusal that names nothing, fails the test. The inputs mix valid
values with strings, bytes, None, booleans, complex numbers, NaN/inf, zero, negative and huge
numbers, ragged and masked arrays.

Profiles (``tests/conftest.py``): ``ci`` (default: few examples, derandomized so that every run
tries the same inputs, no deadline) and ``long`` (``HYPOTHESIS_PROFILE=long``: 500 examples per
property, random). The negative control shows the naming check fails on a raw numpy message.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bayesjoint as bj

# -- value strategies --------------------------------------------------------------------------
reals = st.floats(allow_nan=True, allow_infinity=True, width=64)
plain_reals = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
positive_reals = st.floats(min_value=1e-3, max_value=1e3)
junk = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.booleans(),
    st.complex_numbers(max_magnitude=1e3, allow_nan=False),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=1),
    st.just(object()),
)
counts = st.one_of(
    st.integers(min_value=-3, max_value=6),
    st.floats(min_value=-3.0, max_value=6.0),
    st.just(10**10),
    junk,
)
masked = st.builds(
    lambda n: np.ma.masked_array(np.arange(float(n)), mask=np.arange(n) % 2 == 1),
    st.integers(1, 4),
)
arrays = st.one_of(
    hnp.arrays(np.float64, st.integers(0, 4), elements=reals),
    hnp.arrays(np.complex128, st.integers(1, 3), elements=st.complex_numbers(max_magnitude=9)),
    st.lists(st.one_of(reals, st.text(max_size=2)), max_size=4),
    st.lists(st.lists(plain_reals, max_size=3), min_size=2, max_size=3),  # maybe ragged
    masked,
)
anything = st.one_of(reals, counts, arrays, junk)


def numbers_or(bad_weight_strategy: st.SearchStrategy, good: st.SearchStrategy):
    """Good values half the time, anything the other half."""
    return st.one_of(good, good, bad_weight_strategy)


# -- the check every input must pass -----------------------------------------------------------
def names_the_object(err: Exception, names: tuple[str, ...]) -> bool:
    message = str(err).lower()
    return any(n.lower() in message for n in names if n)


def construct_or_refuse(make, names: tuple[str, ...]):
    """Return the object, or None after a named ValueError/TypeError; anything else fails."""
    try:
        return make()
    except (ValueError, TypeError) as err:
        assert names_the_object(err, names), f"refusal names none of {names}: {err}"
        return None


def test_the_naming_check_catches_a_raw_message():
    # Negative control: numpy's own message names no object, and the check says so.
    with pytest.raises(AssertionError, match="refusal names none of"):
        construct_or_refuse(lambda: np.asarray("abc", dtype=float), ("Normal", "sigma"))


# -- constructors: refuse with a name, or build --------------------------------------------------
GRID = bj.Grid(x=np.arange(4.0) * 10.0, z=-np.arange(3.0)[::-1] * 10.0 - 5.0)
GRID1 = bj.Grid(x=np.arange(4.0))


def _gaussian(a):
    return bj.noise.Gaussian(a["sd"]) if a["cov"] is None else bj.noise.Gaussian(cov=a["cov"])


def _no_gradient(x, g):
    return np.zeros_like(x)


CONSTRUCTORS = {
    "Grid": (
        lambda a: bj.Grid(**{a["name"]: a["x"]}),
        {"name": st.sampled_from(["x", "x/m", "", "easting", " y"]), "x": anything},
        ("Grid",),
    ),
    "Parameter": (
        lambda a: bj.Parameter(
            a["name"], shape=a["shape"], prior=bj.priors.Normal(), units=a["units"]
        ),
        {
            "name": st.one_of(st.sampled_from(["x", "1x", "", "class"]), junk),
            "shape": st.one_of(counts, st.tuples(counts, counts)),
            "units": st.one_of(st.none(), st.just("m"), junk),
        },
        ("Parameter",),
    ),
    "Field": (
        lambda a: bj.Field(a["name"], a["grid"], prior=a["prior"], units=a["units"]),
        {
            "name": st.sampled_from(["rho", "a b"]),
            "grid": st.one_of(st.just(GRID1), junk),
            "prior": st.one_of(st.just(bj.priors.Normal()), junk),
            "units": st.one_of(st.none(), junk),
        },
        ("Field",),
    ),
    "Normal": (
        lambda a: bj.priors.Normal(a["mu"], a["sigma"]),
        {"mu": numbers_or(anything, plain_reals), "sigma": numbers_or(anything, positive_reals)},
        ("Normal",),
    ),
    "HalfNormal": (lambda a: bj.priors.HalfNormal(a["sigma"]), {"sigma": anything}, ("Normal",)),
    "LogNormal": (
        lambda a: bj.priors.LogNormal(a["mu"], a["sigma"]),
        {"mu": anything, "sigma": anything},
        ("LogNormal",),
    ),
    "Uniform": (
        lambda a: bj.priors.Uniform(a["lower"], a["upper"]),
        {"lower": anything, "upper": anything},
        ("Uniform",),
    ),
    "GaussianField": (
        lambda a: bj.priors.GaussianField(a["sigma"], a["length"], kernel=a["kernel"]),
        {
            "sigma": anything,
            "length": anything,
            "kernel": st.one_of(st.sampled_from(["matern52", "gauss"]), junk),
        },
        ("GaussianField",),
    ),
    "PyMC": (lambda a: bj.priors.PyMC(a["fn"]), {"fn": junk}, ("PyMC",)),
    "Gaussian": (
        _gaussian,
        {"sd": anything, "cov": st.one_of(st.none(), arrays)},
        ("Gaussian",),
    ),
    "StudentT": (
        lambda a: bj.noise.StudentT(a["sd"], nu=a["nu"]),
        {"sd": anything, "nu": anything},
        ("StudentT",),
    ),
    "Modality": (
        lambda a: bj.Modality(
            a["name"],
            bj.physics.Linear(np.eye(3), "x"),
            a["data"],
            bj.noise.Gaussian(1.0),
            units=a["units"],
            dims=a["dims"],
        ),
        {
            "name": st.one_of(st.sampled_from(["grav", "x/y"]), junk),
            "data": numbers_or(anything, hnp.arrays(np.float64, 3, elements=plain_reals)),
            "units": st.one_of(st.none(), junk),
            "dims": st.one_of(st.none(), st.sampled_from([("d",), ("d", "d"), ("x/m",), ("",)])),
        },
        ("Modality",),
    ),
    "physics.Linear": (
        lambda a: bj.physics.Linear(a["matrix"], input=a["input"], offset=a["offset"]),
        {
            "matrix": anything,
            "input": st.one_of(st.just("x"), junk),
            "offset": st.one_of(st.none(), anything),
        },
        ("Linear",),
    ),
    "Gravity": (
        lambda a: bj.physics.Gravity(a["grid"], a["stations"]),
        {"grid": st.one_of(st.just(GRID), junk), "stations": anything},
        ("Gravity",),
    ),
    "Magnetics": (
        lambda a: bj.physics.Magnetics(GRID, a["stations"], a["inc"], a["dec"], a["strength"]),
        {"stations": anything, "inc": anything, "dec": anything, "strength": anything},
        ("Magnetics",),
    ),
    "TravelTime": (
        lambda a: bj.physics.TravelTime(GRID, a["sources"], a["receivers"]),
        {"sources": anything, "receivers": anything},
        ("TravelTime",),
    ),
    "Schlumberger": (
        lambda a: bj.physics.Schlumberger(a["ab2"], thickness=a["thickness"]),
        {"ab2": anything, "thickness": st.one_of(st.just("thickness"), anything)},
        ("Schlumberger",),
    ),
    "Wenner": (lambda a: bj.physics.Wenner(a["a"]), {"a": anything}, ("Wenner",)),
    "ConvolutionalSeismogram": (
        lambda a: bj.physics.ConvolutionalSeismogram(a["wavelet"], center=a["center"]),
        {"wavelet": anything, "center": st.one_of(st.none(), counts)},
        ("ConvolutionalSeismogram",),
    ),
    "ShiftedWavelet": (
        lambda a: bj.physics.ShiftedWavelet(a["times"], a["f"]),
        {"times": anything, "f": anything},
        ("ShiftedWavelet",),
    ),
    "BlackBox": (
        lambda a: bj.physics.BlackBox(a["fn"], _no_gradient, output_shape=a["shape"]),
        {"fn": st.one_of(st.just(np.sin), junk), "shape": counts},
        ("BlackBox",),
    ),
    "physics.Function": (
        lambda a: bj.physics.Function(a["fn"], inputs=a["inputs"]),
        {"fn": st.one_of(st.just(lambda m: m["x"]), junk), "inputs": st.one_of(st.none(), junk)},
        ("Function",),
    ),
    "observe.Linear": (lambda a: bj.observe.Linear(a["m"]), {"m": anything}, ("Linear",)),
    "SampleAt": (lambda a: bj.observe.SampleAt(a["i"]), {"i": anything}, ("SampleAt",)),
    "Decimate": (
        lambda a: bj.observe.Decimate(a["f"], a["o"]),
        {"f": counts, "o": counts},
        ("Decimate",),
    ),
    "InstrumentResponse": (
        lambda a: bj.observe.InstrumentResponse(a["h"], mode=a["mode"]),
        {"h": anything, "mode": st.one_of(st.sampled_from(["same", "full", "x"]), junk)},
        ("InstrumentResponse",),
    ),
    "LowPass": (
        lambda a: bj.observe.LowPass(a["c"], a["dt"], a["order"]),
        {"c": anything, "dt": anything, "order": counts},
        ("LowPass",),
    ),
    "Interpolate": (
        lambda a: bj.observe.Interpolate(GRID, a["points"]),
        {"points": anything},
        ("Interpolate",),
    ),
    "CrossGradient": (
        lambda a: bj.CrossGradient(a["a"], "b", strength=a["strength"], name=a["name"]),
        {
            "a": st.one_of(st.just("a"), st.just("b"), junk),
            "strength": anything,
            "name": st.one_of(st.none(), st.sampled_from(["cg", "x/y"]), junk),
        },
        ("CrossGradient",),
    ),
    "Petrophysical": (
        lambda a: bj.Petrophysical("a", "b", a["relation"], scatter=a["scatter"]),
        {
            "relation": st.one_of(st.sampled_from(["linear", "gardner", "lineer"]), junk),
            "scatter": anything,
        },
        ("Petrophysical",),
    ),
    "GP": (
        lambda a: bj.discrepancy.GP(
            a["kernel"], lengthscale=a["ls"], amplitude=1.0, n_basis=a["n_basis"]
        ),
        {
            "kernel": st.one_of(st.just("squared_exponential"), junk),
            "ls": st.one_of(st.none(), anything),
            "n_basis": st.one_of(st.none(), counts),
        },
        ("GP",),
    ),
    "JointInversion": (
        lambda a: bj.JointInversion(a["latent"], a["modalities"]),
        {"latent": st.one_of(st.just([]), junk), "modalities": st.one_of(st.just([]), junk)},
        ("JointInversion", "latent", "modalit"),
    ),
}


@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_every_constructor_refuses_with_a_name_or_builds(constructor):
    make, arguments, names = CONSTRUCTORS[constructor]

    @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.fixed_dictionaries(arguments))
    def check(args):
        given_name = args.get("name")
        extra = (repr(given_name),) if isinstance(given_name, str) and given_name else ()
        construct_or_refuse(lambda: make(args), names + extra)

    check()


# -- end to end: the accepted inputs sample, save and load --------------------------------------
def _run(problem, tmp_path, **kwargs):
    options = {"draws": 4, "chains": 1, "random_seed": 1, "progressbar": False}
    options.update(kwargs)
    idata = problem.sample(**options)
    path = bj.save(idata, tmp_path / "run.nc")
    back = bj.load(path)
    assert back.groups() == idata.groups()
    np.testing.assert_array_equal(back.posterior["x"].values, idata.posterior["x"].values)
    return idata


@pytest.fixture(autouse=True, scope="module")
def _quiet_logs():
    logger = logging.getLogger("bayesjoint")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


#: Examples of the end-to-end properties: fewer in the CI profile (each accepted one samples).
END_TO_END = (
    settings().max_examples // 2
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
    else settings().max_examples
)


@settings(
    max_examples=END_TO_END,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    mu=numbers_or(anything, plain_reals),
    sigma=numbers_or(anything, positive_reals),
    noise_sd=numbers_or(anything, positive_reals),
    data=numbers_or(anything, hnp.arrays(np.float64, 3, elements=plain_reals)),
    matrix=numbers_or(
        anything, hnp.arrays(np.float64, (3, 3), elements=st.floats(-5, 5, allow_nan=False))
    ),
)
@example(mu=0.0, sigma=1.0, noise_sd=0.5, data=np.zeros(3), matrix=np.eye(3))  # goes through
def test_model_inputs_refuse_with_a_name_or_sample_save_and_load(
    tmp_path_factory, mu, sigma, noise_sd, data, matrix
):
    names = ("Normal", "Parameter", "Gaussian", "Modality", "Linear", "JointInversion")

    def make():
        x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(mu, sigma))
        mod = bj.Modality(
            "grav",
            physics=bj.physics.Linear(matrix, input="x"),
            data=data,
            noise=bj.noise.Gaussian(noise_sd),
        )
        return bj.JointInversion([x], [mod])

    problem = construct_or_refuse(make, names)
    if problem is None:
        return
    # no log-likelihood group: its compilation (seconds per model) is not what is fuzzed here
    _run(
        problem,
        tmp_path_factory.mktemp("fuzz"),
        method="exact",
        idata_kwargs={"log_likelihood": False},
    )


SAMPLE_ARGUMENTS = {
    "draws": numbers_or(counts, st.integers(1, 5)),
    "chains": numbers_or(counts, st.integers(1, 2)),
    "tune": numbers_or(counts, st.integers(0, 5)),
    "target_accept": st.one_of(st.none(), st.floats(0.5, 0.99), reals, junk),
    "random_seed": st.one_of(
        st.integers(0, 2**31),
        st.builds(np.random.default_rng, st.integers(0, 9)),
        st.builds(np.random.SeedSequence, st.integers(0, 9)),
        reals,
        junk,
    ),
    "method": st.one_of(st.sampled_from(["exact", "auto", "exactt"]), junk),
}


@pytest.fixture(scope="module")
def tiny():
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality(
        "grav", bj.physics.Linear(np.eye(2), "x"), np.zeros(2), bj.noise.Gaussian(1.0)
    )
    return bj.JointInversion([x], [mod])


@settings(
    max_examples=END_TO_END,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    args=st.fixed_dictionaries(SAMPLE_ARGUMENTS),
    typo=st.one_of(st.none(), st.sampled_from(["draw", "chain", "tunes", "randomseed"])),
)
@example(  # goes through, seeded by a Generator
    args={
        "draws": 3,
        "chains": 2,
        "tune": 0,
        "target_accept": None,
        "random_seed": np.random.default_rng(0),
        "method": "auto",
    },
    typo=None,
)
def test_sample_arguments_refuse_with_a_name_or_sample_save_and_load(
    tiny, tmp_path_factory, args, typo
):
    kwargs = dict(args)
    assume(kwargs["method"] in ("exact", "auto") or typo is None)  # keep the examples apart
    if typo is not None:
        kwargs[typo] = 3
    names = ("sample(", "keyword argument")
    try:
        idata = tiny.sample(progressbar=False, idata_kwargs={"log_likelihood": False}, **kwargs)
    except (ValueError, TypeError) as err:
        assert names_the_object(err, names), f"refusal names none of {names}: {err}"
        return
    path = bj.save(idata, tmp_path_factory.mktemp("fuzz") / "run.nc")
    assert bj.load(path).posterior["x"].shape == idata.posterior["x"].shape
