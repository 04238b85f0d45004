"""The web console's files: `GET /console` and `GET /console/{file}`, served by a function that can
reach nothing (no AWS client, no IAM permission) and needs no key. Everything the console shows
comes from the API's own routes, called by the browser with the key the user signed in with.

Why routes of the HTTP API and not an S3 bucket behind CloudFront: the console and the API then
share one origin, so there is no CORS to configure (and no preflight per call), the console works
wherever the API does (the local cloud included) with nothing else to deploy, and it costs nothing
while idle (`docs/console.md` has the per-page-view figure).

Every answer carries a strict Content-Security-Policy: scripts, styles and `fetch` only from this
origin, no inline script or style, no frames, no plug-ins, no `<base>` and no form posts: a string
that slipped past the console's text-only rendering still could not run or send anything anywhere.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def console_file(path: str) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body for `path` under /console (only the files the console ships)."""
    name = path.removeprefix("/console").strip("/") or "index.html"
    if name not in FILES:
        return 404, {"Content-Type": "text/plain; charset=utf-8", **SECURITY_HEADERS}, b"not found\n"
    # index.html is never cached (it names the other files); they are cached for 5 minutes
    cache = "no-store" if name == "index.html" else "public, max-age=300"
    headers = {"Content-Type": FILES[name], "Cache-Control": cache, **SECURITY_HEADERS}
    return 200, headers, (STATIC / name).read_bytes()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API payload 2.0 in, a response out. `/console` redirects to `/console/` so that the
    page's relative asset paths resolve under it."""
    path = str(event.get("rawPath", "/console"))
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "GET")
    if method not in ("GET", "HEAD"):
        return {"statusCode": 405, "headers": {"Allow": "GET, HEAD", **SECURITY_HEADERS}, "body": ""}
    if path == "/console":
        return {"statusCode": 308, "headers": {"Location": "/console/", **SECURITY_HEADERS}, "body": ""}
    status, headers, body = console_file(path)
    return {
        "statusCode": status,
        "headers": headers,
        "body": base64.b64encode(body).decode() if method == "GET" else "",
        "isBase64Encoded": True,
    }
