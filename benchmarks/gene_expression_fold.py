"""The protein-alone posterior of the gene-expression study across its fold, by sampler.

    python benchmarks/gene_expression_fold.py [--seed 4] [--grid 160]

The protein curve is symmetric in the two degradation rates, so the protein-alone posterior
(case_studies/gene_expression.py, full data: three replicates) reaches across the fold
d_m = d_p into the mirror region. Prints one JSON line: its mass there and the mean and sd of
ln d_m, ln d_p and ln k_tx by quadrature (``protein_alone_by_quadrature``, no sampler) and by
three samplers with the study's full-size settings (4 chains × 2,000 draws, the study's seed):
SMC with random-walk Metropolis moves (the study's choice), SMC with independent proposals,
and NUTS at target_accept 0.99 (with its divergent transitions).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

STUDY = Path(__file__).resolve().parents[1] / "case_studies" / "gene_expression.py"
NAMES = ("ln_d_m", "ln_d_p", "ln_k_tx")


def _study() -> Any:
    spec = importlib.util.spec_from_file_location("gene_expression", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(idata: Any, seconds: float) -> dict[str, Any]:
    post = idata.posterior
    stats = idata.sample_stats
    return {
        "mirror": round(float((post["ln_d_m"] < post["ln_d_p"]).mean()), 4),
        **{n: [round(float(post[n].mean()), 4), round(float(post[n].std()), 4)] for n in NAMES},
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else None,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=4, help="the study's seed (data, sampler)")
    parser.add_argument("--grid", type=int, default=160, help="quadrature points per rate")
    args = parser.parse_args(argv)
    logging.getLogger("bayesjoint").setLevel(logging.WARNING)
    study = _study()
    data = study.simulate(3, np.random.default_rng(args.seed))
    exact = study.protein_alone_by_quadrature(data["protein"], 3, n=args.grid)
    problem = study.build(data, 3)["protein_only"]
    common = {"draws": 2000, "chains": 4, "random_seed": args.seed, "progressbar": False}
    runs = {
        "smc_mh": {"method": "smc", "kernel": "MH"},
        "smc_imh": {"method": "smc", "kernel": "IMH"},
        "nuts_0.99": {"method": "nuts", "tune": 1000, "target_accept": 0.99},
    }
    out: dict[str, Any] = {
        "seed": args.seed,
        "quadrature": {
            "mirror": round(exact["mirror"], 4),
            **{n: [round(v, 4) for v in exact[n]] for n in NAMES},
        },
    }
    for name, kwargs in runs.items():
        tic = time.perf_counter()
        idata = problem.sample(**common, **kwargs)
        out[name] = _summary(idata, time.perf_counter() - tic)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
