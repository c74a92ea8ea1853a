"""`python3 -m ganeti_cmk ...`: the ganeti-cmk command (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
