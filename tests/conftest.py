"""Shared fixtures and the rules every test session follows.

- ``problem`` / ``idata``: a joint problem whose exact posterior is known, compiled and sampled
  once per session.
- ``require_program``: a test that needs a system program (not a Python package) asks for it
  here. When the program is missing the test is skipped with the reason and the install command,
  so ``pip install ".[test]" && python -m pytest`` passes on a machine with only Python and pip.
  With ``BAYESJOINT_REQUIRE_ALL=1`` (set by ``.ci/run`` after it installs those programs) a
  missing program fails the test instead, and so does any other skip: CI runs every test.
- The working tree stays clean: at the end of the session, a file that appeared under the
  repository root during the session and is not a tool cache fails the session (see
  ``_no_new_files_in_the_working_tree``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from bayesjoint.validate import blur_and_points_problem

SEED = 20261129
ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ALL_VARIABLE = "BAYESJOINT_REQUIRE_ALL"


def require_all() -> bool:
    """Whether ``BAYESJOINT_REQUIRE_ALL`` asks for every test to run (no skip allowed)."""
    value = os.environ.get(REQUIRE_ALL_VARIABLE, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise pytest.UsageError(
        f"{REQUIRE_ALL_VARIABLE}={os.environ[REQUIRE_ALL_VARIABLE]!r}: use 1 (every test must "
        "run; a missing system program fails) or 0 / unset (such tests are skipped)"
    )


def find_program(*names: str, purpose: str, install: str) -> str:
    """Return the path of the first of ``names`` on PATH, or skip (fail) the calling test.

    Parameters
    ----------
    *names : str
        Executable names, tried in order (e.g. ``"chromium", "chromium-browser"``).
    purpose : str
        What the program is needed for, shown in the skip or failure message.
    install : str
        How to install it (e.g. the Debian command), shown in the message.
    """
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = (
        f"{' or '.join(names)} not found on PATH (needed for {purpose}); install it with: {install}"
    )
    if require_all():
        pytest.fail(f"{message} [{REQUIRE_ALL_VARIABLE}=1: every test must run]", pytrace=False)
    pytest.skip(f"{message}; set {REQUIRE_ALL_VARIABLE}=1 to make this a failure")


@pytest.fixture(scope="session")
def require_program():
    """:func:`find_program`, for fixtures and tests of any scope."""
    return find_program


def pytest_configure(config):
    require_all()  # a misspelt BAYESJOINT_REQUIRE_ALL stops the run before any test


# Property-based tests (tests/test_fuzz.py): "ci" by default — few examples, the same ones every
# run (derandomize), no per-example deadline (a first compile takes seconds); "long" with
# HYPOTHESIS_PROFILE=long — 500 random examples per property. No example database: the tests
# write nothing outside their temporary folders (hypothesis would keep one in .hypothesis/).
# hypothesis also caches constants and unicode tables in its home folder (.hypothesis/ in the
# working directory by default): keep it in a temporary folder of this test run
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="bayesjoint-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)
settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=500, deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # With BAYESJOINT_REQUIRE_ALL=1 a skip from anywhere (not only require_program) fails the run.
    if _SKIPPED and require_all() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED and require_all():
        terminalreporter.section(f"{REQUIRE_ALL_VARIABLE}=1: skipped tests fail the run")
        for nodeid in _SKIPPED:
            terminalreporter.write_line(f"SKIPPED (not allowed) {nodeid}")


# -- the working tree stays as it was -------------------------------------------------------------
# Files that running Python and its tools leaves under the tree by design (all in .gitignore).
_TOOL_CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")
_BUILD_DIRS = ("build/", "dist/", "docs/_build/", ".ci-venv/")


def _git(root: Path, *args: str) -> list[str] | None:
    """Output lines of a git command run in ``root``, or None if it cannot run."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run(
            [git, *args], cwd=root, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()


def files_not_tracked(root: Path = ROOT) -> set[str] | None:
    """Untracked files under the git checkout ``root`` (ignored ones too), less tool caches.

    None when ``root`` is not the top of a git checkout (e.g. an unpacked sdist, or a copy of
    the tree without ``.git``), or git is missing: then there is nothing to compare against.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if not top or Path(top[0]).resolve() != Path(root).resolve():
        return None
    # Untracked files that git reports, plus ignored ones (a stray *.nc is ignored by git but is
    # still a file written into the tree); wholly ignored folders are listed once, as "dir/".
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    ignored = _git(root, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory")
    if untracked is None or ignored is None:
        return None
    return {
        path
        for path in untracked + ignored
        if not any(part in _TOOL_CACHES or part.endswith(".egg-info") for part in path.split("/"))
        and not path.startswith(_BUILD_DIRS)
    }


@pytest.fixture(scope="session")
def untracked_files():
    """:func:`files_not_tracked`, the listing that the working-tree check compares."""
    return files_not_tracked


@pytest.fixture(scope="session", autouse=True)
def _no_new_files_in_the_working_tree():
    """Fail the session if files appeared in the working tree while it ran.

    Tests write into ``tmp_path`` (or ``monkeypatch.chdir(tmp_path)`` for code that writes into
    the current folder). At the start of the session the untracked files under the repository
    root are listed (``git ls-files --others``, ignored files included, tool caches such as
    ``__pycache__`` left out); at the end, any file not in that list fails the session as an
    error of the last test. Only new untracked files are compared: tracked files that someone
    edits while the tests run are not a test's doing, and files that existed before are left
    alone. A file you create yourself in the tree while the suite runs is reported too: rerun,
    or set ``BAYESJOINT_SKIP_TREE_CHECK=1`` for that run. Without git, or outside a git checkout,
    there is no check.
    """
    if os.environ.get("BAYESJOINT_SKIP_TREE_CHECK", "") not in ("", "0"):
        yield
        return
    before = files_not_tracked()
    start = time.time()
    yield
    if before is None:
        return
    after = files_not_tracked() or set()
    new = []
    for path in sorted(after - before):
        try:  # a file that predates the session, listed anew because its folder's listing changed
            info = (ROOT / path).stat()
            if max(info.st_mtime, info.st_ctime) < start - 1.0:
                continue
        except OSError:
            continue  # gone again
        new.append(path)
    if new:
        pytest.fail(
            "tests wrote into the working tree (write into tmp_path instead): "
            + ", ".join(new)
            + " (if you created these yourself while the tests ran, rerun, or set "
            "BAYESJOINT_SKIP_TREE_CHECK=1)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def problem():
    """120 parameters seen through a blur and at 30 sparse points (linear-Gaussian)."""
    return blur_and_points_problem(120, random_seed=SEED)


@pytest.fixture(scope="session")
def idata(problem):
    """NUTS draws of ``problem`` (4 chains x 1000 after 1000 tuning), sampled once per session."""
    return problem.sample(
        draws=1000,
        tune=1000,
        chains=4,
        cores=1,
        random_seed=SEED,
        progressbar=False,
        method="nuts-plain",
    )
