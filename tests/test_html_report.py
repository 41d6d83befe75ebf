"""bj.report: a self-contained HTML page with every figure, checked in headless Chromium.

The browser check drives Chromium through chromedriver's W3C WebDriver HTTP interface with the
standard library only (Debian packages ``chromium`` and ``chromium-driver``): it loads the page,
reads the browser's console log (errors are level SEVERE, failed resources included), checks
that every image decoded, and takes a full-page screenshot. Where the two programs are missing,
the two browser tests are skipped with the install command (``BAYESJOINT_REQUIRE_ALL=1``, as
set by ``.ci/run``, turns that into a failure); the other tests here need no browser.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.report import _edges, _map_axes, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _problem():
    """A 2-D density field (x across, z up) and a gravity base level, seen by gravity-like sums
    and by density logs in two boreholes."""
    rng = np.random.default_rng(11)
    grid = bj.Grid(x=np.arange(6) * 100.0 + 50.0, z=-(np.arange(4)[::-1] * 50.0 + 25.0))
    field = bj.Field(
        "density",
        grid,
        prior=bj.priors.GaussianField(sigma=100.0, correlation_length=150.0),
        units="kg/m^3",
    )
    truth = 80.0 * np.exp(-((grid.cell_centers()[:, 0] - 300.0) ** 2) / 2e4)
    stations = np.linspace(0.0, 600.0, 10)
    centres = grid.cell_centers()
    # a smooth, positive sensitivity (mGal per kg/m³), ~0.2 mGal for the anomaly
    g = 1e-3 * np.exp(-((stations[:, None] - centres[None, :, 0]) ** 2) / 3e4)
    g *= 1.0 / (1.0 - centres[None, :, 1] / 100.0)
    offset = bj.Parameter("base_level", prior=bj.priors.Normal(0.0, 0.05), units="mGal")
    gravity = bj.Modality(
        "gravity",
        physics=bj.physics.Linear(
            np.hstack([g, np.ones((10, 1))]), input=["density", "base_level"]
        ),
        data=bj_data(g @ truth + 0.02 + 0.05 * rng.normal(size=10), "station", stations),
        noise=bj.noise.Gaussian(0.05),
    )
    sel = np.zeros((4, 24))
    sel[[0, 1, 2, 3], [1, 2, 17, 18]] = 1.0
    borehole = bj.Modality(
        "borehole",
        physics=bj.physics.Linear(sel, input="density"),
        data=sel @ truth + 25.0 * rng.normal(size=4),
        noise=bj.noise.Gaussian(25.0),
        units="kg/m^3",
    )
    return bj.JointInversion(latent=[field, offset], modalities=[gravity, borehole])


def bj_data(values, dim, coords):
    import xarray as xr

    return xr.DataArray(values, dims=dim, coords={dim: coords}, attrs={"units": "mGal"})


@pytest.fixture(scope="module")
def run():
    problem = _problem()
    idata = problem.sample(draws=150, tune=150, chains=2, cores=1, random_seed=5, progressbar=False)
    return problem, idata


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    problem, idata = run
    out = tmp_path_factory.mktemp("report")
    return Path(report(idata, out, problem=problem, title="test report"))


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sections = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))


EXPECTED = [
    "field_density",
    "scalars",
    "datafit_gravity",
    "datafit_borehole",
    "rank",
    "information_budget",
]


def test_report_contains_every_figure(page, run):
    text = page.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(text)
    keys = [img["data-figure"] for img in parser.images]
    assert keys == EXPECTED
    for img in parser.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")  # self-contained: embedded PNG
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
        on_disk = page.parent / "figures" / f"{img['data-figure']}.png"
        assert on_disk.read_bytes() == png  # the same figure is also written as a PNG file
    assert "diagnostics" in parser.sections and "provenance" in parser.sections
    assert "verdict:" in text and "Convergence by variable" in text
    assert not re.search(r"<script", text, re.IGNORECASE)  # no JavaScript needed
    diag = json.loads((page.parent / "diagnostics.json").read_text())
    # the written diagnosis is that of bj.diagnose on the same run, and the page shows it
    from bayesjoint.diagnostics import diagnose

    expected = diagnose(run[1], run[0], progressbar=False)
    assert diag["verdict"] == expected.verdict
    assert diag["reasons"] == list(expected.reasons)
    assert f"verdict: {expected.verdict.upper()}" in text


def test_field_maps_use_grid_coordinates_units_and_colour_bars(run):
    problem, idata = run
    from bayesjoint.diagnostics import diagnose
    from bayesjoint.report import _field_figures

    figs = _field_figures(idata, "density", idata.posterior["density"], "kg/m^3", 80)
    labels = set(figs[0].labels)
    # x across and z up (metres), both colour bars labelled with the field's units
    assert {"x (m)", "z (m)", "density mean (kg/m^3)", "density sd (kg/m^3)"} <= labels
    assert _map_axes(("z", "x")) == ("x", "z") and _map_axes(("x", "z")) == ("x", "z")
    # cell edges rebuilt from the centres are the grid's own edges
    grid = problem.latent["density"].grid
    np.testing.assert_allclose(_edges(grid.centers["x"]), grid.edges["x"])
    np.testing.assert_allclose(_edges(grid.centers["z"]), grid.edges["z"])
    diag = diagnose(idata, problem, conflict=None)
    assert list(diag.table["group"]) == ["density", "density", "base_level"]


def test_report_from_a_file_without_the_problem(run, tmp_path):
    # Without the problem and without a budget in the file, the budget figure is left out and
    # the page says why; everything else is drawn.
    _, idata = run
    path = bj.save(idata, tmp_path / "run.nc")
    index = Path(report(path, tmp_path / "out"))
    text = index.read_text(encoding="utf-8")
    assert 'data-figure="field_density"' in text
    assert 'data-figure="information_budget"' not in text
    assert "no information budget" in text
    with pytest.raises(TypeError, match="InferenceData or a path"):
        report(42, tmp_path / "x")


# -- headless Chromium ------------------------------------------------------------------------
class _Browser:
    """A minimal W3C WebDriver client for chromedriver (standard library only)."""

    def __init__(self, chromium: str, driver: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.profile = tempfile.mkdtemp(prefix="bj-chromium-")
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    pytest.fail("chromedriver did not start within 30 s")
                time.sleep(0.1)
        options = {
            "binary": chromium,
            "args": [*CHROME_FLAGS, f"--user-data-dir={self.profile}", "--window-size=1280,900"],
        }
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        self.session = f"/session/{self._call('POST', '/session', caps)['sessionId']}"

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def open(self, path: Path):
        self._call("POST", f"{self.session}/url", {"url": path.resolve().as_uri()})

    def script(self, source: str):
        return self._call("POST", f"{self.session}/execute/sync", {"script": source, "args": []})

    def console(self):
        return self._call("POST", f"{self.session}/se/log", {"type": "browser"})

    def screenshot(self, out: Path) -> bytes:
        height = int(self.script("return document.documentElement.scrollHeight"))
        self._call(
            "POST", f"{self.session}/window/rect", {"width": 1280, "height": min(height, 16000)}
        )
        png = base64.b64decode(self._call("GET", f"{self.session}/screenshot"))
        out.write_bytes(png)
        return png

    def close(self):
        try:
            if hasattr(self, "session"):
                self._call("DELETE", self.session)
        except OSError:
            pass
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(require_program):
    # System programs, not Python packages: without them these two tests are skipped with the
    # reason (tests/conftest.py), unless BAYESJOINT_REQUIRE_ALL=1 (CI) makes that a failure.
    purpose = "the HTML report checks in headless Chromium"
    install = "apt-get install chromium chromium-driver (Debian)"
    chromium = require_program("chromium", "chromium-browser", purpose=purpose, install=install)
    driver = require_program("chromedriver", purpose=purpose, install=install)
    b = _Browser(chromium, driver)
    yield b
    b.close()


IMAGES_OK = (
    "return Array.from(document.images).map(i => [i.dataset.figure || i.src.slice(0, 30), "
    "i.complete && i.naturalWidth > 0])"
)


def test_report_loads_in_headless_chromium_without_console_errors(page, browser, tmp_path):
    browser.open(page)
    images = browser.script(IMAGES_OK)
    assert [key for key, _ in images] == EXPECTED
    assert all(ok for _, ok in images), images
    errors = [m for m in browser.console() if m["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert browser.script("return document.title") == "test report"
    shot = tmp_path / "report.png"
    png = browser.screenshot(shot)
    assert png.startswith(PNG_SIGNATURE)
    width, height = np.frombuffer(png[16:24], dtype=">u4")
    assert width == 1280 and height > 3000  # the whole page, every figure
    keep = os.environ.get("BAYESJOINT_SCREENSHOT_DIR")
    if keep:  # CI can keep the screenshot as an artifact
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "html_report.png")


def test_browser_check_detects_broken_pages(browser, tmp_path):
    # Negative control: a console error, a script error and a missing image are all caught.
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="missing.png" data-figure="gone"><script>console.error("boom");'
        "undefined_function();</script></body></html>",
        encoding="utf-8",
    )
    browser.open(bad)
    images = browser.script(IMAGES_OK)
    assert images == [["gone", False]]
    messages = " ".join(m["message"] for m in browser.console() if m["level"] == "SEVERE")
    assert "boom" in messages and "undefined_function" in messages and "missing.png" in messages
