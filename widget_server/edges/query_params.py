"""Query parameters, declared once per route: the router refuses a name the route does not declare, and the
OpenAPI document lists exactly the declared ones, with their schemas.

A misspelt filter must never widen a query: `GET /v1/analytics/events?visitor_id=X` (the filter is `visitor`)
used to return every visitor's events. Now it is a 400 `query.invalid` naming `visitor_id`. An empty value is the
same as leaving the parameter out (`?persona=&limit=` is a form left blank); a parameter given twice is refused,
since which of the two would count is a guess. Pages and the embed script ignore their query string instead: a
site may load `/embed.js?v=2` to bust a cache, or land visitors on `/?utm_source=…`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from widget_server.domain.analytics.query import parse_limit
from widget_server.errors import InvalidRequest

Schema = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, its JSON Schema (of the value once parsed) and what it means."""

    name: str
    schema: Schema
    description: str
    comma_separated: bool = False  # an array sent as one value, `type=a,b` (OpenAPI: style form, explode false)

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": "query", "required": False, "allowEmptyValue": True,
                               "description": self.description, "schema": self.schema}
        if self.comma_separated:
            out |= {"style": "form", "explode": False}
        return out


@dataclass(frozen=True)
class Query:
    """The query parameters an operation reads."""

    params: tuple[Param, ...] = ()
    ignores_others: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def read(self, given: QueryParams) -> Mapping[str, str]:
        """The declared parameters that have a value; a 400 `query.invalid` names an unknown or repeated one."""
        values: dict[str, str] = {}
        seen: set[str] = set()
        for name, value in given.multi_items():
            if name not in self.names:
                if self.ignores_others:
                    continue
                reads = f"this endpoint reads {', '.join(self.names)}" if self.names else "this endpoint reads none"
                raise _invalid(name, f"unknown query parameter {name[:60]!r}; {reads}")
            if name in seen:
                raise _invalid(name, f"{name} is given more than once" + (
                    "; separate several values with commas" if self._param(name).comma_separated else ""))
            seen.add(name)
            if "\x00" in value:  # nothing stored has one, and PostgreSQL cannot even compare with it
                raise _invalid(name, f"{name} contains a NUL character")
            if value:
                values[name] = value
        return values

    def openapi(self) -> list[dict[str, Any]]:
        return [p.openapi() for p in self.params]

    def _param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def declare(*params: Param) -> Query:
    """The query of an operation that reads these parameters and no other."""
    return Query(params)


NONE = Query()
IGNORED = Query(ignores_others=True)


def _invalid(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, code="query.invalid", details={"param": name[:100]})


@dataclass(frozen=True)
class Limit:
    """A page size: the parameter an endpoint declares and the value it reads, from the same two numbers."""

    default: int
    most: int

    @property
    def param(self) -> Param:
        return Param("limit", {"type": "integer", "minimum": 1, "maximum": self.most, "default": self.default},
                     f"page size, 1 to {self.most} (default {self.default})")

    def of(self, values: Mapping[str, str]) -> int:
        return parse_limit(values.get("limit"), default=self.default, most=self.most)


NO_NUL = "^[^\\u0000]*$"


def string(name: str, description: str) -> Param:
    return Param(name, {"type": "string", "pattern": NO_NUL}, description)
