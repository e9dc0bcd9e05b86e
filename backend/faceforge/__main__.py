"""``python -m faceforge`` runs the command-line interface."""

from faceforge.cli import main

raise SystemExit(main())
