"""A persona as a document of its own (YAML or JSON): what `widget-server persona export` prints, the console's
Export button downloads and `GET /v1/personas/{id}/export` answers, and what their imports read back.

One format for all three: the persona's fields with its slug first, a sealed provider api_key never included
(`api_key: null`, `api_key_set` saying whether one is stored). An import is validated as a POST body is.
"""

from __future__ import annotations

from typing import Any

import yaml

from widget_server.backends.storage import Storage
from widget_server.domain import personas
from widget_server.domain.sealed import Sealer
from widget_server.errors import SlugTaken


def export_doc(row: dict[str, Any]) -> dict[str, Any]:
    """The document of a stored persona."""
    return {"slug": row["slug"], **personas.public_doc(row["doc"])}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a value repeated is written again: the imports refuse aliases


def to_yaml(doc: Any) -> str:
    """`doc` as block YAML, in its own key order, never with anchors."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


async def import_doc(storage: Storage, tenant_id: str, doc: Any, sealer: Sealer | None, *,
                     replace: bool) -> tuple[dict[str, Any], bool]:
    """Create the persona of `doc`, or (with `replace`) replace the one its slug, or its name's, names; else that
    slug is a 409 `persona.slug_taken`. Returns the persona and whether it is new."""
    try:
        return await personas.create(storage, tenant_id, doc, sealer), True
    except SlugTaken as exc:
        if not replace:
            raise
        return await personas.replace(storage, tenant_id, exc.details["slug"], doc, partial=False,
                                      sealer=sealer), False
