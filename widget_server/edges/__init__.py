"""Edges: HTTP and WebSocket endpoints, the CLI and the pages. They parse, authenticate, call the domain, render."""
