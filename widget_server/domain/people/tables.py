"""The committed tables (data/*.json, package data), loaded once and compiled into weighted choices.

Sources and their years are in data/SOURCES.md; the tables are compact approximations of public statistics,
written into the repository so that nothing is downloaded and a table change is a reviewed diff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from widget_server.domain.people.stream import Choice


def _load(name: str) -> Any:
    return json.loads(resources.files("widget_server.domain.people").joinpath("data", name).read_text("utf-8"))


def _rows(table: dict[str, Any]) -> dict[str, Choice]:
    """A table whose `_columns` name the values and whose other keys each hold one row of weights."""
    columns = [str(c) for c in table["_columns"]]
    return {key: Choice(columns, row) for key, row in table.items() if not key.startswith("_")}


@dataclass(frozen=True)
class Tables:
    raw: dict[str, Any]
    names: dict[str, Any]
    choices: dict[str, Choice]
    rows: dict[str, dict[str, Choice]]
    states: dict[str, list[float]]
    state_by_hispanic: dict[bool, Choice]
    first_names: dict[tuple[str, str], Choice]
    last_names: dict[str, Choice]
    hispanic_first: dict[str, Choice]
    ssa: SsaNames


@dataclass(frozen=True)
class SsaNames:
    """names_ssa.json compiled: by (sex, decade), the names weighted by their SSA counts, the Spanish ones, and the
    decade's births (what each count is a share of)."""

    first: dict[tuple[str, str], Choice]
    hispanic: dict[tuple[str, str], Choice]
    births: dict[tuple[str, str], int]


def _ssa(doc: dict[str, Any]) -> SsaNames:
    def choice(pairs: list[list[Any]]) -> Choice:
        return Choice([n for n, _ in pairs], [c for _, c in pairs])

    first = {(sex, dec): choice(v["names"]) for sex, decades in doc["first"].items() for dec, v in decades.items()}
    births = {(sex, dec): int(v["births"]) for sex, decades in doc["first"].items() for dec, v in decades.items()}
    hispanic = {(sex, dec): choice(v) for sex, decades in doc["hispanic"].items() for dec, v in decades.items()}
    return SsaNames(first, hispanic, births)


def _rank_weights(n: int) -> list[float]:
    """Rank-shaped weights (Zipf-like, exponent 0.7): the top names of a decade are a few times as common as the
    twentieth, as in the SSA lists."""
    return [1.0 / (rank + 1) ** 0.7 for rank in range(n)]


@cache
def tables() -> Tables:
    raw, names = _load("tables.json"), _load("names.json")
    plain = ("gender", "age_band", "ethnicity", "foreign_status", "parents_education", "religion", "face_shape")
    choices = {name: Choice.of(raw[name]) for name in plain}
    rows = {name: _rows(raw[name]) for name in ("occupation_by_education", "employment_by_age", "literacy_by_education",
                                                "relationship_by_age", "children_by_age", "skin_tone", "hair_color",
                                                "hair_texture", "eye_color")}
    rows["childhood_ses_by_parents"] = {k: Choice.of(v) for k, v in raw["childhood_ses_by_parents"].items()}
    rows["education_by_parents"] = {k: Choice.of(v) for k, v in raw["education_by_parents"].items()}
    rows["birth_countries"] = {k: Choice.of(v) for k, v in raw["birth_countries"].items()}
    states = {k: v for k, v in raw["states"].items() if not k.startswith("_")}
    by_hispanic = {flag: Choice(list(states), [p * (h if flag else 1 - h) for p, _, h in states.values()])
                   for flag in (True, False)}
    first = {(sex, decade): Choice(pool, _rank_weights(len(pool)))
             for sex, decades in names["first"].items() for decade, pool in decades.items()}
    last = {eth: Choice(pool, _rank_weights(len(pool))) for eth, pool in names["last"].items()}
    hispanic_first = {sex: Choice(pool, _rank_weights(len(pool))) for sex, pool in names["hispanic_first"].items()}
    return Tables(raw, names, choices, rows, states, by_hispanic, first, last, hispanic_first,
                  _ssa(_load("names_ssa.json")))
