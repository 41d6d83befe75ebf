"""Compile a printed right-hand side together with the integrators, with numba (not public).

The source of :mod:`bayesjoint.physics._ode_kernels`, the helper functions of
:mod:`bayesjoint.physics._ode_compile` and the printed ``_rhs`` / ``_rhs_jac`` of one model are
joined into one module and every function in it is wrapped in ``numba.njit``; numba then inlines
the right-hand side into the integrator loops (the functions reach each other as globals, which
numba treats as compile-time constants).

Caching. Compiled modules are kept per process, keyed by the SHA-256 of the joined source, so
the same model compiles once. The joined source is also written as a file under pytensor's
compile directory (``<config.compiledir>/bayesjoint_ode/``), which lets numba keep the machine
code on disk (``cache=True``): later processes (new sessions, PyMC's chain processes) load it in
a fraction of a second instead of compiling again. Where that folder cannot be written, the
module is built in memory and compiled in every process.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from bayesjoint.physics import _ode_kernels
from bayesjoint.physics._ode_compile import HELPERS

_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()
_SUBDIR = "bayesjoint_ode"


def numba_available() -> bool:
    """Whether numba can be imported (it is a declared dependency; checked, not assumed)."""
    return importlib.util.find_spec("numba") is not None


def module_source(rhs_source: str) -> str:
    """Join the kernels, the helpers and the printed right-hand side into one module's source."""
    return "\n\n".join([inspect.getsource(_ode_kernels), HELPERS, rhs_source])


def _cache_folder() -> Path | None:
    try:
        import pytensor

        folder = Path(pytensor.config.compiledir) / _SUBDIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder if os.access(folder, os.W_OK) else None
    except Exception:  # no compile directory: compile in memory
        return None


def _write_once(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically unless the file already holds it."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(source: str, key: str) -> tuple[dict[str, Any], bool]:
    """Return ``(namespace, file_backed)`` of the joined module."""
    name = f"bayesjoint_ode_{key[:24]}"
    folder = _cache_folder()
    if folder is not None:
        try:
            path = folder / f"{name}.py"
            _write_once(path, source)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            # numba's disk cache finds the module's globals again by importing it by name.
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module.__dict__, True
        except OSError:
            pass
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace, False


def compile_source(rhs_source: str, key: str, jit: bool = True) -> dict[str, Any]:
    """Return the namespace of the joined module, its functions numba-compiled when ``jit``.

    Compilation itself is lazy: numba compiles each function at its first call (for the
    argument types it gets), a few seconds for a small system, or loads it from the disk cache.
    """
    cache_key = f"{key}:{int(jit)}"
    with _LOCK:
        namespace = _CACHE.get(cache_key)
        if namespace is not None:
            return namespace
        source = module_source(rhs_source)
        namespace, file_backed = _load(source, hashlib.sha256(source.encode()).hexdigest())
        if jit:
            import numba

            functions = dict.fromkeys(
                node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
            )
            for name in functions:
                namespace[name] = numba.njit(error_model="numpy", cache=file_backed)(
                    namespace[name]
                )
        _CACHE[cache_key] = namespace
        return namespace
