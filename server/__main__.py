"""`python -m server [serve|audit|token|manifests] ...`; with no command, the usage."""

from server.cli import main

raise SystemExit(main())
