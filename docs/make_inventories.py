"""Write the intersphinx inventories that the docs link against: ``docs/_intersphinx/*.inv``.

The docs build runs without network access (CI reaches package registries only), so Sphinx
cannot download the other projects' ``objects.inv``. These files hold the entries the docs
need, the names that bayesjoint's docstrings, signatures and pages refer to, each with its
address relative to the project's public documentation (the base URLs are in ``conf.py``).
The files are committed; after adding a name here, run::

    python docs/make_inventories.py          # rewrite the files
    python docs/make_inventories.py --check  # exit 1 if a file differs (tests/test_docs.py)

A name the docs use that is missing here fails the ``-W`` build (``nitpicky`` is on), so the
list cannot silently fall behind. Names are the public ones: ``xarray.Dataset``, not
``xarray.core.dataset.Dataset`` (docs/_ext/bayesjoint_xref.py maps an annotation's defining
module to the public name).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_intersphinx"

# project -> (name in the header, version in the header, [(name, role, uri)]); "$" in a uri
# stands for the name (expanded when the file is written).
CLASS, FUNC, METH, MOD, DATA = "py:class", "py:function", "py:method", "py:module", "py:data"
INVENTORIES: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "python": (
        "Python",
        "3",
        [
            ("None", DATA, "library/constants.html#None"),
            ("bool", CLASS, "library/functions.html#bool"),
            ("bytes", CLASS, "library/stdtypes.html#bytes"),
            ("callable", FUNC, "library/functions.html#callable"),
            ("collections.abc.Callable", CLASS, "library/collections.abc.html#$"),
            ("collections.abc.Collection", CLASS, "library/collections.abc.html#$"),
            ("collections.abc.Iterable", CLASS, "library/collections.abc.html#$"),
            ("collections.abc.Iterator", CLASS, "library/collections.abc.html#$"),
            ("collections.abc.Mapping", CLASS, "library/collections.abc.html#$"),
            ("collections.abc.Sequence", CLASS, "library/collections.abc.html#$"),
            ("dict", CLASS, "library/stdtypes.html#dict"),
            ("float", CLASS, "library/functions.html#float"),
            ("int", CLASS, "library/functions.html#int"),
            ("list", CLASS, "library/stdtypes.html#list"),
            ("object", CLASS, "library/functions.html#object"),
            ("os.PathLike", CLASS, "library/os.html#$"),
            ("pathlib.Path", CLASS, "library/pathlib.html#$"),
            ("str", CLASS, "library/stdtypes.html#str"),
            ("tuple", CLASS, "library/stdtypes.html#tuple"),
            ("typing.Any", DATA, "library/typing.html#$"),
            ("TypeError", "py:exception", "library/exceptions.html#$"),
            ("ValueError", "py:exception", "library/exceptions.html#$"),
        ],
    ),
    "numpy": (
        "NumPy",
        "stable",
        [
            ("numpy.ndarray", CLASS, "reference/generated/$.html#$"),
            ("numpy.random.Generator", CLASS, "reference/random/generator.html#$"),
            (
                "numpy.random.SeedSequence",
                CLASS,
                "reference/random/bit_generators/generated/$.html#$",
            ),
            ("numpy.random.default_rng", FUNC, "reference/random/generator.html#$"),
            ("numpy.typing.ArrayLike", DATA, "reference/typing.html#$"),
        ],
    ),
    "scipy": (
        "SciPy",
        "stable",
        [
            ("scipy.constants", MOD, "reference/constants.html#module-$"),
            ("scipy.optimize.differential_evolution", FUNC, "reference/generated/$.html#$"),
            ("scipy.optimize.minimize", FUNC, "reference/generated/$.html#$"),
            ("scipy.sparse.coo_matrix", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.csc_matrix", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.csr_array", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.csr_matrix", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.dia_matrix", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.linalg.LinearOperator", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.sparray", CLASS, "reference/generated/$.html#$"),
            ("scipy.sparse.spmatrix", CLASS, "reference/generated/$.html#$"),
        ],
    ),
    "xarray": (
        "xarray",
        "stable",
        [
            ("xarray.DataArray", CLASS, "generated/$.html#$"),
            ("xarray.Dataset", CLASS, "generated/$.html#$"),
        ],
    ),
    "pandas": (
        "pandas",
        "stable",
        [("pandas.DataFrame", CLASS, "reference/api/$.html#$")],
    ),
    "pymc": (
        "PyMC",
        "stable",
        [
            ("pymc.Model", CLASS, "api/generated/$.html#$"),
            ("pymc.Model.compile_logp", METH, "api/generated/pymc.Model.html#$"),
            ("pymc.Model.compile_dlogp", METH, "api/generated/pymc.Model.html#$"),
            ("pymc.find_MAP", FUNC, "api/generated/$.html#$"),
            ("pymc.gp.HSGP", CLASS, "api/gp/generated/$.html#$"),
            ("pymc.sample", FUNC, "api/generated/$.html#$"),
            # Documented under its defining module, pymc.smc.
            ("pymc.sample_smc", FUNC, "api/generated/pymc.smc.sample_smc.html#pymc.smc.sample_smc"),
            ("pymc.smc.sample_smc", FUNC, "api/generated/$.html#$"),
        ],
    ),
    "arviz": (
        "ArviZ",
        "0.23",
        [
            ("arviz.InferenceData", CLASS, "api/generated/$.html#$"),
            ("arviz.loo", FUNC, "api/generated/$.html#$"),
            ("arviz.summary", FUNC, "api/generated/$.html#$"),
        ],
    ),
    "pytensor": (
        "PyTensor",
        "latest",
        [("pytensor.tensor", MOD, "library/tensor/index.html#module-$")],
    ),
}


def inventory_bytes(project: str, version: str, entries: list[tuple[str, str, str]]) -> bytes:
    """Return an ``objects.inv`` (format version 2) holding ``entries``, sorted, priority 1."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = "".join(
        f"{name} {role} 1 {uri.replace('$', name)} -\n" for name, role, uri in sorted(entries)
    )
    return header.encode() + zlib.compress(lines.encode(), 9)


def _text(data: bytes) -> str:
    """Return an inventory's header and entries as text."""
    header, _, body = data.partition(b"zlib.\n")
    return (header + _ + b"\n").decode() + zlib.decompress(body).decode()


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every inventory; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    args = parser.parse_args(argv)
    stale = []
    if not args.check:
        OUT.mkdir(exist_ok=True)
    for key, (project, version, entries) in INVENTORIES.items():
        path = OUT / f"{key}.inv"
        data = inventory_bytes(project, version, entries)
        if args.check:
            # Compared decompressed: another zlib build may compress the same text differently.
            if not path.exists() or _text(path.read_bytes()) != _text(data):
                stale.append(path.name)
        else:
            path.write_bytes(data)
    expected = {f"{key}.inv" for key in INVENTORIES}
    extra = sorted(p.name for p in OUT.glob("*.inv") if p.name not in expected)
    if stale or extra:
        print(f"out of date: {stale}; not made by this script: {extra}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
