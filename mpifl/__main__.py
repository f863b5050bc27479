"""`python -m mpifl` entry point."""

from mpifl.cli import main

raise SystemExit(main())
