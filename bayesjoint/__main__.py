"""``python -m bayesjoint``."""

from bayesjoint.cli import main

raise SystemExit(main())
