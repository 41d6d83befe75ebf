"""Case studies shipped with bayesjoint, installed as the package ``bayesjoint_case_studies``.

Each module is a runnable script with ``main(argv)`` and the options ``--quick``, ``--out FILE.nc``
and ``--seed N``; run one with ``bayesjoint run <name>`` (``bayesjoint run --list`` shows them) or
``python case_studies/<name>.py`` from a source checkout.
"""
