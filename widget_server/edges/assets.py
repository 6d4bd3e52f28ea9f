"""Where the files the server sends live: the widget script (`embed/`) and the console and demo assets (`static/`).

In a source checkout (and an editable install) they are the repository's top-level folders. A built package
carries copies inside it, `widget_server/_embed` and `widget_server/_static` (pyproject.toml maps the folders
in as package data), so a non-editable install serves them from wherever it is started.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def _folder(name: str) -> Path:
    packaged = PACKAGE / f"_{name}"
    return packaged if packaged.is_dir() else PACKAGE.parent / name


EMBED_DIR = _folder("embed")
STATIC_DIR = _folder("static")
TEMPLATES_DIR = PACKAGE / "templates"
