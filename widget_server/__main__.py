"""`python -m widget_server` is the same as the `widget-server` command."""

from widget_server.edges.cli import main

raise SystemExit(main())
