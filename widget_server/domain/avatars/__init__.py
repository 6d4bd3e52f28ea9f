"""Offline avatars (issue 17): a deterministic SVG portrait drawn from a person's physical attributes, stored and
served by the app. The shapes and palettes are the project's own, hand-written here (no third-party art)."""
