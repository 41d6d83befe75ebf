"""The ``bayesjoint`` command: ``demo``, ``run``, ``diagnose``, ``report``.

Errors a user can cause (a missing or unreadable file, an unknown case study) print one line on
stderr and exit non-zero; tracebacks are shown only with ``--traceback``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["case_studies", "load_case_study", "main"]

CASE_STUDY_PACKAGE = "bayesjoint_case_studies"

#: Exit statuses.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHECK = 0, 1, 2, 3


def _source_tree_case_dir() -> Path | None:
    """Return ``case_studies/`` next to the package when running from a source checkout."""
    here = Path(__file__).resolve().parent.parent / "case_studies"
    return here if here.is_dir() else None


def case_studies() -> list[str]:
    """Return the names of the installed case studies.

    They are the modules of the ``bayesjoint_case_studies`` package (the repository's
    ``case_studies/`` folder, shipped with the distribution), or of ``case_studies/`` in a source
    checkout.

    Examples
    --------
    >>> "profile_gravity_borehole" in case_studies()
    True
    """
    names: set[str] = set()
    spec = importlib.util.find_spec(CASE_STUDY_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        names.update(
            m.name
            for m in pkgutil.iter_modules(spec.submodule_search_locations)
            if not m.name.startswith("_")
        )
    folder = _source_tree_case_dir()
    if folder is not None:
        names.update(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    return sorted(names)


def load_case_study(name: str) -> ModuleType:
    """Import a case study by module name (``profile_gravity_borehole``; ``.py`` is stripped).

    Raises
    ------
    ValueError
        When there is no such case study; the message lists the available ones.
    """
    stem = Path(name).name
    stem = stem[:-3] if stem.endswith(".py") else stem
    if not stem.isidentifier():
        raise ValueError(f"{name!r} is not a case-study name; choose one of {case_studies()}")
    if importlib.util.find_spec(CASE_STUDY_PACKAGE) is not None:
        try:
            return importlib.import_module(f"{CASE_STUDY_PACKAGE}.{stem}")
        except ModuleNotFoundError as err:
            if err.name != f"{CASE_STUDY_PACKAGE}.{stem}":
                raise
    folder = _source_tree_case_dir()
    path = folder / f"{stem}.py" if folder is not None else None
    if path is None or not path.is_file():
        raise ValueError(f"no case study {stem!r}; available: {', '.join(case_studies())}")
    spec = importlib.util.spec_from_file_location(f"{CASE_STUDY_PACKAGE}.{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parser() -> argparse.ArgumentParser:
    from bayesjoint import __version__

    parser = argparse.ArgumentParser(
        prog="bayesjoint",
        description="Bayesian multi-modal joint inversion: run case studies, diagnose runs and "
        "write reports.",
        epilog="Run 'bayesjoint COMMAND --help' for a command's options. Exit status: 0 ok, "
        "1 error (e.g. unreadable file), 2 usage, 3 diagnostics failed, 130/143 sampling "
        "interrupted by SIGINT/SIGTERM (the kept draws are in --checkpoint FILE).",
    )
    parser.add_argument("--version", action="version", version=f"bayesjoint {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_parser(sub)
    _add_run_parser(sub)
    _add_diagnose_parser(sub)
    _add_report_parser(sub)
    return parser


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the built-in two-modality joint inversion and write a netCDF report",
        description="Gravity + borehole density along a 1 km profile: sample with NUTS, check "
        "against the exact linear-Gaussian posterior, print diagnostics and the per-modality "
        "information budget, write a netCDF report.",
    )
    demo.add_argument("--out", default="bayesjoint-demo.nc", help="report path (netCDF)")
    demo.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    demo.add_argument("--draws", type=int, default=2000, help="draws per chain (default 2000)")
    demo.add_argument(
        "--tune", type=int, default=1000, help="tuning draws per chain (default 1000)"
    )
    demo.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    demo.add_argument("--cores", type=int, default=None, help="parallel chains")
    demo.add_argument(
        "--quick", action="store_true", help="small and fast (40 cells, 2 x 200 draws)"
    )
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.add_argument(
        "--checkpoint",
        default=None,
        metavar="FILE",
        help="write the draws to FILE (netCDF) while sampling, every --checkpoint-every seconds; "
        "after an interrupt "
        "'bayesjoint diagnose FILE' reads them and --resume continues the run. A FILE, because "
        "the demo samples once ('bayesjoint run' takes a FOLDER: a case study samples several "
        "times)",
    )
    demo.add_argument("--resume", action="store_true", help="continue the run in --checkpoint")
    demo.add_argument(
        "--checkpoint-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between writes of --checkpoint (default 30)",
    )


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a case study (a script shipped in case_studies/)",
        description="Run one of the case studies shipped with bayesjoint; it samples, prints "
        "its figures and writes a netCDF report. Use --list to see them.",
    )
    run.add_argument("case_study", nargs="?", help="case-study name, e.g. profile_gravity_borehole")
    run.add_argument("--quick", action="store_true", help="small and fast settings (as in CI)")
    run.add_argument("--out", default=None, help="report path (netCDF; default: the study's)")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: the study's)")
    run.add_argument("--list", action="store_true", help="list the case studies and exit")
    run.add_argument("--no-progress", action="store_true", help="hide the progress indicator")
    from bayesjoint.inference.checkpoint import add_checkpoint_arguments

    add_checkpoint_arguments(run)


def _add_diagnose_parser(sub: Any) -> None:
    diag = sub.add_parser(
        "diagnose",
        help="check a saved run: convergence, per-modality fit, conflicts",
        description="Diagnose a netCDF report: split R-hat, bulk/tail ESS, MCSE, divergences, "
        "E-BFMI, tree depth (Vehtari et al. 2021), PSIS-LOO and posterior-predictive checks per "
        "modality, and conflicts between modalities. Exit status 3 when the verdict is FAIL.",
    )
    diag.add_argument("file", help="netCDF report written by bayesjoint (bj.save)")
    diag.add_argument("--rhat", type=float, default=None, help="R-hat limit (default 1.01)")
    diag.add_argument("--ess", type=float, default=None, help="bulk and tail ESS limit (400)")
    diag.add_argument("--ebfmi", type=float, default=None, help="E-BFMI limit (default 0.3)")
    diag.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    diag.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_report_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "report",
        help="write an HTML report with figures from a saved run",
        description="Write a self-contained HTML page (index.html) with PNG figures: posterior "
        "mean and sd of fields, marginal posteriors, data fit per modality, rank plots, "
        "information budget, diagnostics.",
    )
    rep.add_argument("file", help="netCDF report written by bayesjoint (bj.save)")
    rep.add_argument("--out", default=None, help="output folder (default: FILE without .nc)")
    rep.add_argument("--title", default=None, help="page title")
    rep.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fail(command: str, message: str, status: int = EXIT_ERROR) -> int:
    text = " ".join(str(message).split())  # one line, whatever the message
    print(f"bayesjoint {command}: {text}", file=sys.stderr)
    return status


def _interactive() -> bool:
    return sys.stderr.isatty()


def _load(command: str, path: str) -> Any:
    """Load a report or raise _UserError with a one-line reason."""
    from bayesjoint.io import load

    if os.path.isdir(path):
        raise _UserError(f"{path!r} is a folder, not a netCDF report")
    try:
        idata = load(path)
    except FileNotFoundError:
        raise _UserError(f"no such file: {path!r}") from None
    except (ValueError, OSError, KeyError, RuntimeError, TypeError) as err:
        raise _UserError(f"cannot read {path!r}: {err}") from None
    if "posterior" not in idata.groups():
        raise _UserError(f"{path!r} has no posterior group; is it a bayesjoint/ArviZ report?")
    return idata


class _UserError(Exception):
    """An error the user can fix; printed as one line."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from bayesjoint import demo

    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "n_cells": 100}
    if args.quick:
        settings = dict(demo.QUICK)
    try:
        result = demo.run(
            out=args.out,
            random_seed=args.seed,
            cores=args.cores,
            progressbar=not args.no_progress,
            echo=print,
            checkpoint=args.checkpoint,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            **settings,
        )
    except OSError as err:
        return _fail("demo", f"cannot write the report: {err}")
    if result.path:
        print(f"next: bayesjoint diagnose {result.path}; bayesjoint report {result.path}")
    # the verdict includes the comparison with the exact posterior, full size and --quick alike
    return EXIT_OK if result.passed else EXIT_CHECK


def _cmd_run(args: argparse.Namespace) -> int:
    if args.list or not args.case_study:
        names = case_studies()
        if not args.list:
            print("bayesjoint run: give a case study; available:", file=sys.stderr)
            for n in names:
                print(f"  {n}", file=sys.stderr)
            return EXIT_USAGE
        for n in names:
            module_doc = ""
            try:
                module_doc = (load_case_study(n).__doc__ or "").strip().splitlines()[0]
            except Exception as err:  # list it anyway, with why it cannot be imported
                module_doc = f"(cannot import: {type(err).__name__}: {err})"
            print(f"{n:<32} {module_doc}")
        return EXIT_OK
    try:
        module = load_case_study(args.case_study)
    except ValueError as err:
        return _fail("run", str(err), EXIT_USAGE)
    if not callable(getattr(module, "main", None)):
        return _fail("run", f"case study {args.case_study!r} has no main(argv) function")
    argv = []
    if args.quick:
        argv.append("--quick")
    if args.out is not None:
        argv += ["--out", args.out]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.checkpoint is not None:
        from bayesjoint.inference.checkpoint import _check_folder

        try:
            _check_folder(args.checkpoint)
        except ValueError as err:
            return _fail("run", str(err), EXIT_USAGE)
        argv += ["--checkpoint", args.checkpoint]
    if args.resume:
        argv.append("--resume")
    status = None
    if not args.no_progress and _interactive():
        try:
            from rich.console import Console

            status = Console(stderr=True).status(f"running case study {module.__name__}…")
            status.start()
        except ImportError:  # pragma: no cover - rich comes with PyMC
            status = None
    figures = None
    from bayesjoint.inference.checkpoint import checkpoint_folder

    try:
        with checkpoint_folder(None):  # the study's --checkpoint holds only inside its run
            figures = module.main(argv)
    except SystemExit as exc:  # argparse inside the study
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
        if code:
            return code
    except OSError as err:
        return _fail("run", f"{args.case_study}: cannot write the report: {err}")
    finally:
        if status is not None:
            status.stop()
    return _case_study_status(args.case_study, figures)


def _case_study_status(name: str, figures: Any) -> int:
    """Return ``EXIT_CHECK`` when a case study's figures say ``"passed": false``, else ``EXIT_OK``.

    The failed checks (``figures["checks"]``) are named on stderr.
    """
    if isinstance(figures, dict) and figures.get("passed") is False:
        failed = [k for k, ok in (figures.get("checks") or {}).items() if not ok]
        _fail("run", f"{name}: self-checks failed: {', '.join(failed) or 'passed is false'}")
        return EXIT_CHECK
    return EXIT_OK


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from bayesjoint.diagnostics.diagnosis import diagnose

    idata = _load("diagnose", args.file)
    overrides: dict[str, float] = {}
    if args.rhat is not None:
        overrides["rhat"] = args.rhat
    if args.ess is not None:
        overrides["ess_bulk"] = overrides["ess_tail"] = args.ess
    if args.ebfmi is not None:
        overrides["ebfmi"] = args.ebfmi
    result = diagnose(idata, progressbar=not args.no_progress and _interactive(), **overrides)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(f"bayesjoint diagnose: {args.file}")
        print(result.to_text())
    return EXIT_CHECK if result.verdict == "fail" else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from bayesjoint.report import report

    idata = _load("report", args.file)
    out = args.out
    if out is None:
        stem = args.file[:-3] if args.file.endswith(".nc") else args.file
        out = f"{stem}-report"
    try:
        path = report(
            idata,
            out,
            title=args.title,
            progressbar=not args.no_progress and _interactive(),
        )
    except OSError as err:
        raise _UserError(f"cannot write the report to {out!r}: {err}") from None
    print(f"report written: {path}")
    return EXIT_OK


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "diagnose": _cmd_diagnose,
    "report": _cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on an error (one line on stderr), 2 on a usage error, 3 when the
        diagnostics, the demo's checks or a case study's checks (``"passed": false``) fail.

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    bayesjoint ...
    0
    """
    from bayesjoint.inference.interrupt import SamplingInterrupted

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except _UserError as err:
        return _fail(args.command, str(err))
    except SamplingInterrupted as stop:  # SIGINT / SIGTERM while sampling: say what was kept
        hint = "; continue it with --resume" if stop.checkpoint and stop.idata else ""
        return _fail(args.command, stop.describe() + hint, stop.exit_status)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)
    except Exception as err:  # never a traceback unless asked for
        if args.traceback:
            traceback.print_exc()
            return EXIT_ERROR
        return _fail(
            args.command,
            f"{type(err).__name__}: {err} (rerun with --traceback for details)",
        )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
