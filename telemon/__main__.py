"""`python -m telemon`."""

from telemon.cli import main

raise SystemExit(main())
