"""``python -m pipeline <command>``: the command line lives in ``pipeline.apps.cli``."""
import sys

from pipeline.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
