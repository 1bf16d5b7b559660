"""The web dashboard: ``GET /dashboard`` (an HTML shell) and its assets under ``/dashboard/static/``.

The page is static; its JavaScript fetches ``GET /v1/dashboard/data`` with the API key the user typed
(sent as ``X-API-Key``), so the shell itself needs no auth. Everything is served from ``service/static/``:
no CDN, no inline scripts or styles, so it works offline under ``Content-Security-Policy: default-src 'self'``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"
#: the page's own policy (the security middleware may add more headers; this one stands on its own)
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(tags=["dashboard"])


def _assets() -> dict[str, Path]:
    """The files the router may serve, by name (a fixed list: no path from the URL ever reaches the disk)."""
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in _TYPES and p.name != "index.html"}


_ASSETS = _assets()


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    """The dashboard's HTML shell (no data in it; the script fetches /v1/dashboard/data)."""
    return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"],
                        headers={**_HEADERS, "Content-Security-Policy": CSP})


@router.get("/dashboard/static/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """One of the dashboard's CSS, JavaScript or SVG files."""
    path = _ASSETS.get(name)
    if path is None:
        raise HTTPException(404, f"no dashboard asset named {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)
