"""Every image under docs/ and the command of the repository that draws it.

    python docs/figures.py --check
    python docs/figures.py --regenerate [--only NAME ...] [--cost cheap] [--keep DIR]

``--check`` (files only, seconds): every image under ``docs/`` is listed in :data:`FIGURES`,
every listed image exists, every listed command's script exists, and every page that quotes
figures of a command shows its image. Exit status 1 and a line per problem otherwise.

``--regenerate`` runs the listed commands (or those named by ``--only``, or those of a given
``--cost``) into a temporary folder and compares each new image with the committed one (a PNG of
the same width and height) and, where the command prints a final JSON line of figures, the
figures that its docs page quotes (:data:`FIGURES` ``quoted``: equal, or within ``rtol`` for
numbers). Every difference is printed; exit status 1 when any. The runs are as documented
(full size unless the page shows a ``--quick`` figure): ``cost`` says what to expect, ``cheap``
being a minute or less on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")


def _sbc(family: str, seed: int, quoted: dict[str, Any], cost: str) -> dict[str, Any]:
    return {
        "command": [
            "benchmarks/sbc.py",
            "--family",
            family,
            "--simulations",
            "200",
            "--seed",
            str(seed),
            "--client",
            "serial",
            "--figure",
            "{image}",
        ],
        "page": "docs/calibration.md",
        "quoted": {"simulations": 200, **quoted},
        "cost": cost,
    }


def _study(name: str, seed: int, quick: bool = False) -> dict[str, Any]:
    return {
        "command": [
            f"case_studies/{name}.py",
            *(["--quick"] if quick else []),
            "--seed",
            str(seed),
            "--out",
            "{dir}/" + f"{name}.nc",
        ],
        "image": f"{name}.png",  # the scripts draw <out>.png next to their report
        "page": f"docs/case_studies/{name}.md",
        "quoted": {},
        "cost": "minutes" if quick else "tens of minutes",
    }


#: image (relative to the repository) -> how it is made. ``command``: a script of the
#: repository and its arguments (``{image}``: the path to draw to; ``{dir}``: the run's folder,
#: with ``image`` the file name the script draws there); ``page``: the docs page that shows it;
#: ``quoted``: figures of the command's final JSON line that the page quotes; ``cost``.
FIGURES: dict[str, dict[str, Any]] = {
    "docs/figures/sbc_linear.png": _sbc(
        "linear", 2026, {"verdict": "fail", "flagged": ["x[7]"], "quantities": 10}, "cheap"
    ),
    "docs/figures/sbc_negative_control.png": _sbc(
        "negative-control", 2026, {"verdict": "fail", "quantities": 10}, "cheap"
    ),
    "docs/figures/sbc_learned_noise.png": _sbc(
        "learned-noise", 2026, {"verdict": "pass", "quantities": 11}, "hours"
    ),
    "docs/figures/sbc_gp_discrepancy.png": _sbc(
        "gp-discrepancy", 2026, {"verdict": "pass", "quantities": 6}, "hours"
    ),
    "docs/figures/sbc_petrophysics.png": _sbc("petrophysics", 2026, {"quantities": 12}, "hours"),
    "docs/figures/sbc_cross_gradient.png": _sbc(
        "cross-gradient", 2026, {"verdict": "pass", "quantities": 26}, "hours"
    ),
    "docs/case_studies/figures/gene_expression.png": _study("gene_expression", 4),
    "docs/case_studies/figures/gravity_magnetics.png": _study("gravity_magnetics", 1),
    "docs/case_studies/figures/materials_porosity.png": _study("materials_porosity", 4),
    "docs/case_studies/figures/medical_imaging.png": _study("medical_imaging", 2, quick=True),
    "docs/case_studies/figures/medical_imaging_full.png": _study("medical_imaging", 2),
    "docs/case_studies/figures/ocean_temperature.png": _study("ocean_temperature", 5),
    "docs/case_studies/figures/seismic_resistivity.png": _study("seismic_resistivity", 7),
    "docs/case_studies/figures/sensor_fusion.png": _study("sensor_fusion", 3),
}


def images(docs: Path = DOCS) -> list[str]:
    """Every image file under ``docs`` (build folders excluded), relative to its parent."""
    found = []
    for path in sorted(docs.rglob("*")):
        parts = path.relative_to(docs).parts
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith("_build") for p in parts):
            found.append(str(Path(docs.name, *parts)))
    return found


def check(root: Path = ROOT, figures: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Return the problems found (empty: every image is listed and every command exists)."""
    figures = FIGURES if figures is None else figures
    problems = []
    for image in images(root / "docs"):
        if image not in figures:
            problems.append(f"{image}: not listed in docs/figures.py (which command draws it?)")
    for image, spec in figures.items():
        if not (root / image).is_file():
            problems.append(f"{image}: listed but missing")
        script = spec["command"][0]
        if not (root / script).is_file():
            problems.append(f"{image}: its script {script} does not exist")
        page = root / spec["page"]
        if not page.is_file():
            problems.append(f"{image}: its page {spec['page']} does not exist")
        elif Path(image).name not in page.read_text(encoding="utf-8"):
            problems.append(f"{image}: its page {spec['page']} does not show it")
    return problems


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def _same(new: Any, old: Any, rtol: float) -> bool:
    if isinstance(old, bool) or not isinstance(old, int | float):
        return new == old
    return isinstance(new, int | float) and abs(new - old) <= rtol * max(abs(old), 1e-12)


def regenerate(
    names: list[str], folder: Path, rtol: float = 1e-6, timeout: float | None = None
) -> list[str]:
    """Run the commands of ``names`` into ``folder``; return the differences found."""
    differences = []
    for image in names:
        spec = FIGURES[image]
        run_dir = folder / Path(image).stem
        run_dir.mkdir(parents=True, exist_ok=True)
        new_image = run_dir / spec.get("image", Path(image).name)
        args = [a.format(image=new_image, dir=run_dir) for a in spec["command"]]
        command = [sys.executable, str(ROOT / args[0]), *args[1:]]
        print("$", shlex.join(["python", *args]), flush=True)
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            differences.append(f"{image}: the command exited {done.returncode}")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        printed = json.loads(lines[-1]) if lines else {}
        for key, quoted in spec["quoted"].items():
            if key not in printed:
                differences.append(f"{image}: the command printed no {key!r}")
            elif not _same(printed[key], quoted, rtol):
                differences.append(
                    f"{image}: {key} = {printed[key]!r}, {spec['page']} quotes {quoted!r}"
                )
        if not new_image.is_file():
            differences.append(f"{image}: the command drew no {new_image.name}")
        elif png_size(new_image) != png_size(ROOT / image):
            differences.append(
                f"{image}: the new image is {png_size(new_image)} pixels, the committed one "
                f"{png_size(ROOT / image)}"
            )
        print(json.dumps({"image": image, "printed": printed}), flush=True)
    return differences


def main(argv: list[str] | None = None) -> int:
    """Run ``--check`` or ``--regenerate``; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="every image listed, every script")
    mode.add_argument("--regenerate", action="store_true", help="rerun and compare")
    parser.add_argument("--only", nargs="+", default=None, help="images (or their stems)")
    parser.add_argument("--cost", default=None, help="only the figures of this cost")
    parser.add_argument("--keep", default=None, help="run into this folder (kept)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line)
        print(json.dumps({"images": len(images()), "listed": len(FIGURES), "problems": problems}))
        return 1 if problems else 0
    names = list(FIGURES)
    if args.only:
        names = [n for n in names if n in args.only or Path(n).stem in args.only]
    if args.cost:
        names = [n for n in names if FIGURES[n]["cost"] == args.cost]
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        differences = regenerate(names, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="figures_") as tmp:
            differences = regenerate(names, Path(tmp))
    for line in differences:
        print(line)
    print(json.dumps({"regenerated": names, "differences": differences}))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
