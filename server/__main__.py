"""`python -m server [serve|audit|token|manifests] ...`; with no command, serve on stdio."""

from server.cli import main

raise SystemExit(main())
