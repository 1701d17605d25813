"""The /ui page of the read service: a small static page that looks at one tenant's tags (search,
a time range, a numeric tag's time-weighted average with its min/max band, a string tag's spans
as a timeline), calling the /v1 endpoints with the key the user types in.

Plants are often air-gapped, so everything the page loads is served here: its HTML, script and
style (readapi/server/ui/) and the plotly.js bundled in the `plotly` Python package. The page
holds no data and no key, so it needs none to load; the data calls carry the key in their
`Authorization` header, never in a URL, so it stays out of access logs and browser history.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# starlette's FileResponse opens files with anyio.open_file, which anyio imports lazily on first
# use: inside a request, on a server thread, where an import racing another thread's import can
# fail on Python 3.11.7 ("AST constructor recursion depth mismatch", CPython gh-106905). Imported
# here, with the service, instead.
from anyio import open_file as _open_file  # noqa: F401 (imported for its side effect)
from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

_PAGE_DIR = Path(__file__).resolve().parent / "ui"
# What the page may load (its own origin only; plotly sets inline styles on the chart) and may
# not do (be framed, send a referrer, post a form anywhere).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
# The only files under /ui/static, by name: a request never becomes a path.
_STATIC = {
    "ui.js": (_PAGE_DIR / "ui.js", "text/javascript"),
    "ui.css": (_PAGE_DIR / "ui.css", "text/css"),
}
_PLOTLY_JS = "plotly.min.js"

router = APIRouter(prefix="/ui", include_in_schema=False)


def plotly_js() -> Path:
    """The minified plotly.js that the installed `plotly` package ships."""
    return Path(str(resources.files("plotly") / "package_data" / _PLOTLY_JS))


@router.get("")
def page() -> FileResponse:
    """The page itself: it asks for the key and calls /v1 with it."""
    return FileResponse(_PAGE_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """The page's script and style, and plotly.js (cached a day: it changes only with the
    installed package)."""
    if name == _PLOTLY_JS:
        headers = {**_PAGE_HEADERS, "Cache-Control": "public, max-age=86400"}
        return FileResponse(plotly_js(), media_type="text/javascript", headers=headers)
    if name not in _STATIC:
        raise HTTPException(status_code=404)
    path, media_type = _STATIC[name]
    return FileResponse(path, media_type=media_type, headers=_PAGE_HEADERS)
