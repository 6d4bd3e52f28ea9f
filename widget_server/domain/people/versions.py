"""Generator versions. A version fixes the algorithm, the tables and the reference date that ages are counted
against, so a persona never changes with the day it is generated; a request may pin an older version.

2026.2 draws first names from the SSA counts (names_ssa.json: each decade's names covering 76-97% of its births)
instead of each decade's top 20 with rank-shaped weights, which gave the top 20 names every draw (the SSA's give
them 15-48%). Its algorithm is otherwise 2026.1's; the stream is keyed by the version, so a seed's whole
person differs between the two, as between any two versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from widget_server.errors import InvalidRequest


@dataclass(frozen=True)
class Version:
    name: str
    reference_date: date  # "today" for every persona of this version
    first_names: str = "top20"  # "top20": names.json, rank-shaped weights; "ssa": names_ssa.json, SSA counts


VERSIONS = {v.name: v for v in (Version("2025.1", date(2025, 1, 1)), Version("2026.1", date(2026, 1, 1)),
                                Version("2026.2", date(2026, 1, 1), first_names="ssa"))}
CURRENT = "2026.2"


def version(name: str | None) -> Version:
    """The named version (the current one when None), or 400 naming the versions there are."""
    found = VERSIONS.get(CURRENT if name is None else name)
    if found is None:
        raise InvalidRequest(f"unknown generator version {str(name)[:40]!r}: one of {', '.join(VERSIONS)}",
                             code="persona.unknown_version", details={"param": "version"})
    return found
