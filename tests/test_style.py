"""The code base stays ruff clean (lint and format), so CI enforces it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["bayesjoint", "tests", "case_studies", "benchmarks", "tools"]


@pytest.fixture(scope="module")
def ruff():
    exe = shutil.which("ruff")
    if exe is None:  # ruff is in the test extra; its absence is an install error, not a skip
        pytest.fail("ruff not found: install the test extra, pip install '.[test]'")
    return exe


def test_ruff_lint(ruff):
    paths = [p for p in TARGETS if (ROOT / p).exists()]
    result = subprocess.run([ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format(ruff):
    paths = [p for p in TARGETS if (ROOT / p).exists()]
    result = subprocess.run(
        [ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
