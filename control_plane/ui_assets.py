"""Serves the web studio (`control_plane/ui`, built into `ui/dist`) at `/`.

Every path that is not the API's is the single-page app: a built file when one exists,
otherwise `index.html`, so the browser's router can take over. API paths are excluded by
the route's own pattern, so an unknown `/api/...` path keeps answering the API's JSON 404
and a wrong method on an API route keeps its 405.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, HTTPException
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from control_plane.settings import Settings

log = logging.getLogger(__name__)

DIST = Path(__file__).parent / "ui" / "dist"

# Paths the app never claims (nor anything under them, which also keeps Starlette's
# trailing-slash redirect from landing on the app): the API, its docs and schema, keys,
# health and metrics.
_RESERVED = ("api", "docs", "redoc", "openapi.json", ".well-known", "healthz", "metrics")

_HTML_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # CodeMirror injects its styles at run time, hence 'unsafe-inline' for styles only.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
}
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kaizen Studio</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Kaizen Studio control plane</h1>
<p>The API is running, but the web studio has not been built.</p>
<p>Build it (Node.js 20 and npm needed), then reload this page:</p>
<pre>cd control_plane/ui &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p><code>make up</code> does this for you when Node.js is installed.
The API reference is at <a href="/docs">/docs</a>.</p>
</body></html>
"""


class _StudioPath(Convertor[str]):
    """Any path except the reserved ones (a lookahead keeps them out of the match)."""

    regex = "(?!(?:{})(?:/|$)).*".format("|".join(re.escape(p) for p in _RESERVED))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("kaizen_studio_path", _StudioPath())


def _file_in(dist: Path, path: str) -> Path | None:
    if not path:
        return None
    candidate = (dist / path).resolve()
    if candidate.is_file() and candidate.is_relative_to(dist.resolve()):
        return candidate
    return None


def mount_ui(app: FastAPI, settings: Settings, dist: Path | None = None) -> None:
    """Serve the built studio at `/` (or, before a build, a page saying how to build it).

    `settings` is part of the call so the studio can grow configuration (SSO buttons, a
    base path) without changing the app's wiring; nothing in it is needed yet.
    """
    root = dist or DIST

    async def studio(request: Request) -> Response:
        path: str = request.path_params.get("path", "")
        index = root / "index.html"
        if not index.is_file():
            if path:
                raise HTTPException(status_code=404, detail="not found")
            return HTMLResponse(NOT_BUILT_PAGE, headers=_HTML_HEADERS)
        found = _file_in(root, path)
        if found is not None and found.name != "index.html":
            headers = _IMMUTABLE if path.startswith("assets/") else {"Cache-Control": "no-cache"}
            return FileResponse(found, headers=headers)
        if "." in path.rsplit("/", 1)[-1]:
            # A missing file (a stale asset): never answer it with the HTML page.
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(index, media_type="text/html", headers=_HTML_HEADERS)

    # Plain Starlette routes: outside the OpenAPI schema and FastAPI's parameter handling.
    app.router.add_route("/", studio, methods=["GET", "HEAD"], include_in_schema=False)
    app.router.add_route(
        "/{path:kaizen_studio_path}", studio, methods=["GET", "HEAD"], include_in_schema=False
    )
    if not (root / "index.html").is_file():
        log.info("web studio not built; `/` explains how to build it", extra={"dist": str(root)})
