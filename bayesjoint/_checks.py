"""Checks of user input shared by the constructors and ``sample()``: one place, one style.

Every public constructor refuses bad input with a ValueError or TypeError that names the object
(the class, and the modality, field or parameter by name where it has one), the argument, and
what to change, before anything is compiled or sampled. The helpers here do the checks that
recur: real-valued arrays (no strings, complex numbers or masked arrays), whole-number counts
and shapes, names that netCDF accepts, units, seeds, sampler settings, keyword arguments, and
the memory a request needs. :func:`checked_init` wraps a constructor so that any refusal
raised inside it without a name (a raw numpy message) gets one.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_count",
    "as_real_array",
    "as_seed",
    "as_shape",
    "check_dim_names",
    "check_kwargs",
    "check_memory",
    "check_probability",
    "check_units",
    "checked_init",
    "screen_value",
]

#: Bytes per float64 value.
_FLOAT = 8


def _type(value: Any) -> str:
    return type(value).__name__


# -- values ----------------------------------------------------------------------------------------
def _is_masked(value: Any) -> bool:
    return isinstance(value, np.ma.MaskedArray)


def _is_complex(value: Any) -> bool:
    if isinstance(value, (complex, np.complexfloating)):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        try:
            return np.dtype(dtype).kind == "c"
        except TypeError:
            return False
    if isinstance(value, (list, tuple)) and value and len(value) <= 100_000:
        try:
            return np.asarray(value).dtype.kind == "c"
        except (ValueError, TypeError):
            return False
    return False


def screen_value(value: Any, what: str) -> None:
    """Refuse a masked array or complex numbers, which no constructor of the package takes.

    Parameters
    ----------
    value : object
        An argument as given.
    what : str
        How the error message names it, e.g. ``"modality 'grav': data"``.

    Raises
    ------
    TypeError
        For a :class:`numpy.ma.MaskedArray` (its mask would be ignored: masked values would be
        used as data) or complex values (their imaginary part would be dropped).

    Examples
    --------
    >>> screen_value(np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "data")
    Traceback (most recent call last):
    ...
    TypeError: data is a masked array; its mask would be ignored. ...
    """
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        raise TypeError(
            f"{what} is bytes ({_short(value)}); give a str for a name or numbers for values"
        )
    if _is_masked(value):
        raise TypeError(
            f"{what} is a masked array; its mask would be ignored. Drop the masked entries "
            "(a.compressed(), with their noise and coordinates) or fill them (a.filled(value))"
        )
    if _is_complex(value):
        raise TypeError(
            f"{what} has complex values; give real numbers (split real and imaginary parts into "
            "two modalities or stack them along a data axis)"
        )


def as_real_array(value: Any, what: str, *, allow_bool: bool = False) -> np.ndarray:
    """Return ``value`` as a float array, or raise naming ``what`` and the fix.

    Parameters
    ----------
    value : array_like
        Numbers: a scalar, a nested sequence, a numpy array, a scipy/xarray array.
    what : str
        How the error message names the value, e.g. ``"Normal sigma"``.
    allow_bool : bool, default False
        Whether booleans count as numbers (0 and 1).

    Raises
    ------
    TypeError
        For strings, bytes, None, complex numbers, masked arrays, booleans, ragged sequences and
        anything else that is not real numbers.

    Examples
    --------
    >>> as_real_array([1, 2], "Normal mu")
    array([1., 2.])
    >>> as_real_array("abc", "Normal mu")
    Traceback (most recent call last):
    ...
    TypeError: Normal mu must be a real number or an array of real numbers, got the str 'abc'
    """
    screen_value(value, what)
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(
            f"{what} must be a real number or an array of real numbers, got the "
            f"{_type(value)} {value!r}"
        )
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(
            f"{what} must be a real number or a regular (not ragged) array of real numbers; "
            f"numpy cannot read it ({err})"
        ) from None
    if arr.dtype.kind == "b" and not allow_bool:
        raise TypeError(f"{what} must be real numbers, got booleans ({value!r})")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (ValueError, TypeError) as err:
            raise TypeError(
                f"{what} must be real numbers, got {_short(value)} of dtype {arr.dtype} ({err})"
            ) from None
        if arr.dtype.kind == "c":  # pragma: no cover - caught by screen_value
            raise TypeError(f"{what} has complex values; give real numbers")
    return arr.astype(float, copy=False)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_count(value: Any, what: str, minimum: int = 1) -> int:
    """Return ``value`` as an int ``>= minimum``; a whole-valued float such as ``4.0`` is accepted.

    Raises
    ------
    TypeError
        For non-numbers, booleans and fractional values (``5.7`` is not silently made ``5``).
    ValueError
        For values below ``minimum``.

    Examples
    --------
    >>> as_count(4.0, "chains")
    4
    >>> as_count(0, "chains")
    Traceback (most recent call last):
    ...
    ValueError: chains must be at least 1, got 0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a whole number, got the {_type(value)} {_short(value)}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    else:
        number_f = float(value)
        if not np.isfinite(number_f) or number_f != np.floor(number_f):
            raise TypeError(f"{what} must be a whole number, got {value!r}")
        number = int(number_f)
    if number < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {number}")
    return number


def as_shape(shape: Any, what: str) -> tuple[int, ...]:
    """Return a shape as a tuple of positive ints (an int is a 1-D shape).

    Examples
    --------
    >>> as_shape(3, "Parameter 'x': shape"), as_shape((2, 4), "shape"), as_shape((), "shape")
    ((3,), (2, 4), ())
    """
    if isinstance(shape, (str, bytes)) or shape is None:
        raise TypeError(f"{what} must be an int or a tuple of ints, got {_short(shape)}")
    if np.ndim(shape) == 0:
        return (as_count(shape, what),)
    try:
        entries = list(shape)
    except TypeError:
        raise TypeError(
            f"{what} must be an int or a tuple of ints, got the {_type(shape)} {_short(shape)}"
        ) from None
    return tuple(as_count(s, f"{what} entry", 1) for s in entries)


# -- names, dims and units -------------------------------------------------------------------------
def check_dim_names(dims: Sequence[Any], what: str) -> tuple[str, ...]:
    """Check dimension names: strings, distinct, and names that netCDF files can hold.

    netCDF refuses an empty name and a name containing ``/`` (the group separator); a name
    starting with a space or control character is refused as well.

    Examples
    --------
    >>> check_dim_names(("x", "z"), "Grid")
    ('x', 'z')
    >>> check_dim_names(("d", "d"), "Parameter 'v': dims")
    Traceback (most recent call last):
    ...
    ValueError: Parameter 'v': dims repeat 'd'; give each axis its own dimension name
    """
    out = []
    for dim in dims:
        if not isinstance(dim, str):
            raise TypeError(
                f"{what}: dimension names must be strings, got the {_type(dim)} {dim!r}"
            )
        if not dim or dim.strip() != dim or "/" in dim or any(ord(c) < 32 for c in dim):
            raise ValueError(
                f"{what}: dimension name {dim!r} cannot be saved in netCDF (empty, '/', "
                "leading/trailing spaces or control characters); use e.g. 'x' or 'depth_m'"
            )
        if dim in out:
            raise ValueError(f"{what} repeat {dim!r}; give each axis its own dimension name")
        out.append(dim)
    return tuple(out)


def check_units(units: Any, what: str) -> str | None:
    """Return ``units`` when None or a str; raise a TypeError naming ``what`` otherwise.

    Examples
    --------
    >>> check_units("kg/m^3", "Field 'rho'") == "kg/m^3"
    True
    """
    if units is None or (isinstance(units, str) and not isinstance(units, np.str_)):
        return units
    if isinstance(units, np.str_):
        return str(units)
    raise TypeError(
        f"{what}: units must be a string such as 'mGal' or 'kg/m^3', got the {_type(units)} "
        f"{_short(units)}"
    )


# -- sampler settings ------------------------------------------------------------------------------
def check_probability(value: Any, what: str) -> float:
    """Return a float strictly between 0 and 1 (e.g. a target acceptance rate).

    Examples
    --------
    >>> check_probability(0.9, "sample(target_accept=...)")
    0.9
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number in (0, 1), got the {_type(value)} {value!r}")
    number = float(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1 (e.g. 0.9), got {value!r}")
    return number


def as_seed(random_seed: Any, what: str = "random_seed") -> int | None:
    """Return an integer seed from what PyMC accepts as one; None stays None.

    Parameters
    ----------
    random_seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        A Generator gives one integer drawn from it (so the run follows from the Generator's
        state); a SeedSequence gives the first word of its state.

    Raises
    ------
    TypeError
        For floats (``1.7`` is not silently made ``1``), strings and other types.
    ValueError
        For negative integers.

    Examples
    --------
    >>> as_seed(3), as_seed(np.random.SeedSequence(5)) == as_seed(np.random.SeedSequence(5))
    (3, True)
    """
    from bayesjoint._random import SEED_BOUND, child_seed

    if random_seed is None:
        return None
    if isinstance(random_seed, np.random.Generator):
        return child_seed(random_seed)
    if isinstance(random_seed, np.random.SeedSequence):
        return int(random_seed.generate_state(1, dtype=np.uint64)[0] % SEED_BOUND)
    if isinstance(random_seed, (bool, np.bool_)) or not isinstance(random_seed, numbers.Integral):
        raise TypeError(
            f"{what} must be an int, a numpy.random.Generator or a numpy.random.SeedSequence, "
            f"got the {_type(random_seed)} {_short(random_seed)}"
        )
    seed = int(random_seed)
    if seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed}")
    return seed


def check_kwargs(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Refuse unknown keyword arguments, suggesting the closest valid name.

    Examples
    --------
    >>> check_kwargs(["draw"], ["draws", "tune", "chains"], "sample()")
    Traceback (most recent call last):
    ...
    TypeError: sample() got an unexpected keyword argument 'draw'; did you mean 'draws'?
    """
    valid = sorted(set(valid))
    for name in given:
        if name in valid:
            continue
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"valid ones are {valid}"
        raise TypeError(f"{where} got an unexpected keyword argument {name!r}; {hint}")


# -- memory ----------------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Return the machine's physical memory in bytes, or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def check_memory(n_bytes: float, what: str, fix: str) -> None:
    """Refuse a request needing more than the machine's physical memory, with the figures.

    Parameters
    ----------
    n_bytes : float
        The estimated need.
    what : str
        What needs it, e.g. ``"Parameter 'x' (1e10 values)"``.
    fix : str
        What to change.

    Examples
    --------
    >>> check_memory(2**70, "sample(draws=2**67)", "draw fewer")
    Traceback (most recent call last):
    ...
    ValueError: sample(draws=2**67) needs about 1,099,511,627,776.0 GiB of memory, ...
    """
    total = available_memory()
    if total is not None and n_bytes > total:
        raise ValueError(
            f"{what} needs about {_gib(n_bytes)} of memory, more than this machine's "
            f"{_gib(total)}; {fix}"
        )


def latent_bytes(size: int, ndim: int) -> int:
    """Estimated bytes a latent variable of ``size`` values needs to exist in a model.

    Its coordinates (one int64 per element along each axis, at most), its value, its gradient
    and one draw: ``8 (ndim + 3) size``.
    """
    return _FLOAT * (ndim + 3) * int(size)


# -- constructors ----------------------------------------------------------------------------------
#: Fragments of messages that name nothing (numpy's, Python's): a refusal carrying one of these
#: and no name of its object gets the name of the constructor and argument.
def _names_object(message: str, names: Sequence[str]) -> bool:
    low = message.lower()
    return any(n and n.lower() in low for n in names)


def _culprit(arguments: dict[str, Any]) -> str | None:
    """Name the first argument that is not a real number array but looks meant as one."""
    for name, value in arguments.items():
        if callable(value) or (isinstance(value, str) and name in ("name", "input", "kernel")):
            continue
        if isinstance(value, (str, bytes)) or value is None:
            continue
        try:
            as_real_array(value, name)
        except TypeError:
            return name
    for name, value in arguments.items():
        if isinstance(value, (str, bytes)):
            return name
    return None


_NO_PARAMETER = inspect.Parameter("_", inspect.Parameter.KEYWORD_ONLY)


def _numeric_annotation(annotation: str) -> bool:
    """Whether a (string) annotation asks for a number and not a bool."""
    words = set(annotation.replace("|", " ").replace("[", " ").replace("]", " ").split())
    return bool(words & {"float", "int"}) and "bool" not in words


def checked_init(label: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a constructor so that every refusal names the object, before any work is done.

    Before the constructor runs, each argument is screened (:func:`screen_value`: masked
    arrays, complex values). A ValueError or TypeError raised inside the constructor whose
    message names neither ``label``, the class, nor the object's ``name`` argument is re-raised
    with that prefix and the argument at fault, e.g. ``"bj.priors.Normal: argument sigma:
    could not convert string to float: 'abc'"``.

    Parameters
    ----------
    label : str
        How messages call the class, e.g. ``"bj.priors.Normal"``.
    """

    def decorate(init: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            cls = type(self).__name__
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as err:
                raise TypeError(f"{label}: {err}") from None
            arguments = {k: v for k, v in list(bound.arguments.items())[1:]}
            for key, value in list(arguments.items()):
                if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.pop(key)
                    arguments.update(value)
                elif signature.parameters[key].kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments.pop(key)
                    arguments.update({f"{key}[{i}]": v for i, v in enumerate(value)})
            owner = label
            given_name = arguments.get("name")
            if isinstance(given_name, str) and given_name:
                owner = f"{label} {given_name!r}"
            for key, value in arguments.items():
                screen_value(value, f"{owner}: argument {key}")
                annotation = str(signature.parameters.get(key, _NO_PARAMETER).annotation)
                if isinstance(value, (bool, np.bool_)) and _numeric_annotation(annotation):
                    raise TypeError(
                        f"{owner}: argument {key} must be a number ({annotation}), got {value!r}"
                    )
            try:
                init(self, *args, **kwargs)
            except (ValueError, TypeError) as err:
                message = str(err)
                names = [label.split(".")[-1], cls]
                if isinstance(given_name, str) and given_name:
                    names.append(repr(given_name))
                if _names_object(message, names):
                    raise
                culprit = _culprit(arguments)
                where = f"argument {culprit}: " if culprit else ""
                raise type(err)(f"{owner}: {where}{message}") from None

        return wrapper

    return decorate
