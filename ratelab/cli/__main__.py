"""``python -m ratelab.cli``: the command line (same as the ``ratelab`` script)."""

import sys

from ratelab.cli.main import main

sys.exit(main())
