"""Pages of a project's groups, a group's personas and the library, as the other lists of the API page
(/v1/personas, /v1/prompt/jobs): oldest first, `limit` rows at a time, and `next_cursor` the id of the last row
shown until the last page (then null). A cursor that is not an id of the list's kind is a 400 `query.invalid`
rather than an empty page, so that a cursor pasted into the wrong list is noticed."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from widget_server.errors import InvalidRequest

GROUP_CURSOR = "^pgrp_[0-9a-z]{1,36}$"  # the ids `next_cursor` gives, as new_id makes them
MEMBER_CURSOR = "^gper_[0-9a-z]{1,36}$"
LIBRARY_CURSOR = "^lib_[0-9a-z]{1,36}$"

Row = dict[str, Any]


def checked(cursor: str | None, pattern: str) -> str | None:
    if cursor is not None and not re.fullmatch(pattern, cursor):
        raise InvalidRequest("cursor is not one this list returned", code="query.invalid", details={"param": "cursor"})
    return cursor


async def page(fetch: Callable[[str | None, int], Awaitable[Sequence[Row]]], cursor: str | None, pattern: str,
               limit: int) -> tuple[list[Row], str | None]:
    """The rows of one page (one more is read to know whether another follows) and the next page's cursor."""
    rows = list(await fetch(checked(cursor, pattern), limit + 1))
    shown = rows[:limit]
    return shown, shown[-1]["id"] if len(rows) > limit else None
