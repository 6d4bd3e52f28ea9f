"""Where a turn's frames go: every channel passes an `emit` (the widget's channel log, an SSE queue, nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Frame = dict[str, Any]
Emit = Callable[[Frame], Any]
