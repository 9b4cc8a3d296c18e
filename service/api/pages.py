"""Pages a person looks at: the entity viewer (``/``, ``/ui``), Swagger UI (``/docs``) and ReDoc
(``/redoc``), every asset served from ``static/`` in this package.

Nothing is fetched from a CDN: lab networks are often closed, and FastAPI's default docs pages
show a blank page there. The vendored UIs and their licences are in ``static/vendor/`` (its
README gives versions and digests). Every URL in the pages is relative (``static/...``,
``openapi.json``), so they also work under a path prefix behind a proxy.

The pages hold no data and need no API key (``auth.py`` lets ``PUBLIC_PATHS`` and
``PUBLIC_PREFIX`` through); what they show comes from the API, with the key the person enters.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

STATIC_DIR = Path(__file__).parent / "static"
VIEWER_PATHS = ("/", "/ui")
PUBLIC_PATHS = frozenset({*VIEWER_PATHS, "/docs", "/redoc", "/openapi.json", "/favicon.ico"})
PUBLIC_PREFIX = "/static/"

# The viewer loads only its own files and talks only to this origin. The docs pages need inline
# script and style (FastAPI's page template, Swagger UI's and ReDoc's rendering) and ReDoc runs a
# worker from a blob; everything else is still this origin only.
_VIEWER_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SWAGGER = {
    # FastAPI's defaults, plus: no call to the public validator service; keys kept for the tab only.
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "validatorUrl": None,
    "persistAuthorization": False,
    "displayRequestDuration": True,
}


def _page(html: HTMLResponse | str, csp: str) -> HTMLResponse:
    body = html if isinstance(html, str) else bytes(html.body).decode()
    return HTMLResponse(body, headers={"content-security-policy": csp, "x-content-type-options": "nosniff", "cache-control": "no-cache"})


def install_pages(app: FastAPI, title: str) -> None:
    """Mount ``static/`` and add the page routes (none of them in the OpenAPI schema).

    The app must be built with ``docs_url=None, redoc_url=None`` so these pages replace FastAPI's
    CDN-backed ones.
    """
    viewer = (STATIC_DIR / "viewer.html").read_text(encoding="utf-8")
    swagger = get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{title} — API docs",
        swagger_js_url="static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="static/favicon.svg",
        swagger_ui_parameters=_SWAGGER,
    )
    redoc = get_redoc_html(
        openapi_url="openapi.json",
        title=f"{title} — API reference",
        redoc_js_url="static/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url="static/favicon.svg",
        with_google_fonts=False,
    )

    async def viewer_page(request: Request) -> Response:
        return _page(viewer, _VIEWER_CSP)

    async def swagger_page(request: Request) -> Response:
        return _page(swagger, _DOCS_CSP)

    async def redoc_page(request: Request) -> Response:
        return _page(redoc, _DOCS_CSP)

    async def favicon(request: Request) -> Response:
        return Response((STATIC_DIR / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    for path in VIEWER_PATHS:
        app.add_route(path, viewer_page, methods=["GET"], include_in_schema=False)
    app.add_route("/docs", swagger_page, methods=["GET"], include_in_schema=False)
    app.add_route("/redoc", redoc_page, methods=["GET"], include_in_schema=False)
    app.add_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
    app.mount(PUBLIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="static")
