"""``python -m brainae``: the same command line as the ``brainae`` script."""
import sys

from brainae.cli import main

if __name__ == "__main__":
    sys.exit(main())
