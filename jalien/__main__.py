"""``python -m jalien`` is the same command line as ``jalien-bin``."""

from jalien.cli.main import main

raise SystemExit(main())
