"""``python -m hotops``: the same command line as the ``hotops`` console script."""
import sys

from hotops.cli import main

if __name__ == "__main__":
    sys.exit(main())
