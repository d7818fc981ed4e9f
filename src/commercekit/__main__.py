"""``python -m commercekit`` runs the command line."""

from commercekit.cli import main

raise SystemExit(main())
