"""The entry point Nuitka compiles into ``jalien-bin`` (what the console script runs)."""

import sys

from jalien.cli.main import main

sys.exit(main())
