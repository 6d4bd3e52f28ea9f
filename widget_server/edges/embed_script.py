"""`GET /embed.js`: the widget script (embed/widget.js), with a strong ETag, caching headers and gzip.

The file is read once and kept in memory with its gzip form; a changed modification time reloads it, so an
edited widget is served without a restart. What is served is the file without its whole-line comments (the
source documents itself for its developers; visitors download the code): only lines that are nothing but a
comment go, so no code, string or regular expression changes. Public and cross-origin by design: any page may
load the script (whether it may chat is decided by the publishable key's origin list).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from widget_server.edges.assets import EMBED_DIR

WIDGET = EMBED_DIR / "widget.js"
CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class Script:
    mtime_ns: int
    raw: bytes
    gzipped: bytes
    etag: str  # strong: the content hash; the gzip form gets its own tag (a different representation)

    @property
    def etag_gzip(self) -> str:
        return self.etag[:-1] + '-gz"'


_cache: dict[Path, Script] = {}


def load(path: Path = WIDGET) -> Script:
    """The script, from memory unless the file changed since it was read."""
    mtime = path.stat().st_mtime_ns
    cached = _cache.get(path)
    if cached is not None and cached.mtime_ns == mtime:
        return cached
    raw = served(path.read_bytes())
    script = Script(mtime, raw, gzip.compress(raw, 9, mtime=0), f'"{hashlib.sha256(raw).hexdigest()[:32]}"')
    _cache[path] = script
    return script


def served(source: bytes) -> bytes:
    """The script without the lines that are only a comment (`// …`, or within `/* … */`), under one line that
    says where the source is."""
    out = [b"// widget_server embed: the source, with its comments, is embed/widget.js of widget_server"]
    in_block = False
    for line in source.split(b"\n"):
        text = line.strip()
        if in_block:
            in_block = not text.endswith(b"*/")
        elif text.startswith(b"//"):
            continue
        elif text.startswith(b"/*"):
            in_block = not text.endswith(b"*/")
        else:
            out.append(line)
    return b"\n".join(out)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*") and params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            return True
    return False


def _matches(request: Request, tags: tuple[str, ...]) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    given = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in given or any(t in given for t in tags)


async def embed_js(request: Request) -> Response:
    try:
        script = load()
    except FileNotFoundError:
        return Response("// widget not found\n", status_code=404, media_type="text/javascript")
    zipped = _accepts_gzip(request)
    etag = script.etag_gzip if zipped else script.etag
    headers = {
        "ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*", "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request, (script.etag, script.etag_gzip)):
        return Response(status_code=304, headers=headers)
    body = script.gzipped if zipped else script.raw
    if zipped:
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers, media_type="text/javascript; charset=utf-8")
