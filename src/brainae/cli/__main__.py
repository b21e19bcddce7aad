"""``python -m brainae.cli``: the same as ``brainae``."""
import sys

from brainae.cli import main

sys.exit(main())
