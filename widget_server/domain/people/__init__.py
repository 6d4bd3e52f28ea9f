"""Synthetic people (issue 17): a seeded, deterministic persona generator with PersonaGen's fields and values.

`generate(seed, version)` is pure: no wall clock (ages count from the version's reference date), no process
state, the same bytes on every Python and machine. `rules.RULES` declare what every persona must satisfy.
"""

from __future__ import annotations

from widget_server.domain.people.generator import generate
from widget_server.domain.people.versions import CURRENT, VERSIONS, version

__all__ = ["CURRENT", "VERSIONS", "generate", "version"]
