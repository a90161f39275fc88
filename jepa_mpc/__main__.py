"""``python -m jepa_mpc``: the ``jepa-mpc`` console script."""

import sys

from jepa_mpc.cli import main

sys.exit(main())
