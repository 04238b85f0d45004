"""The console's function: its files with a strict policy, nothing else, and no way to reach AWS."""

from __future__ import annotations

import ast
import base64
import sys
from pathlib import Path
from typing import Any

import pytest
from console.app import CONTENT_SECURITY_POLICY, FILES, STATIC, lambda_handler


def get(path: str, method: str = "GET") -> dict[str, Any]:
    return lambda_handler({"rawPath": path, "requestContext": {"http": {"method": method}}}, None)


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_console_file_is_served_as_itself_with_the_policy(name: str) -> None:
    answer = get(f"/console/{name}")
    assert answer["statusCode"] == 200
    assert base64.b64decode(answer["body"]) == (STATIC / name).read_bytes()
    assert answer["headers"]["Content-Type"] == FILES[name]
    assert answer["headers"]["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"


def test_every_file_the_page_names_is_served_and_nothing_else_is() -> None:
    assert {path.name for path in STATIC.iterdir()} == set(FILES)
    assert get("/console/")["headers"]["Cache-Control"] == "no-store"  # index.html names the others
    for path in ("/console/../api/app.py", "/console/app.py", "/console/static/index.html", "/console/x.js"):
        assert get(path)["statusCode"] == 404
    assert get("/console/index.html", "POST")["statusCode"] == 405
    assert get("/console")["headers"]["Location"] == "/console/"


def test_the_policy_allows_no_inline_code_and_nothing_from_elsewhere() -> None:
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert all(value in ("'self'", "'none'", "'self' data:") for value in directives.values())


def test_the_console_function_imports_nothing_that_reaches_aws() -> None:
    source = (Path(sys.modules["console.app"].__file__ or "")).read_text()
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "base64", "pathlib", "typing"}


def test_the_page_renders_no_markup_from_data() -> None:
    script = (STATIC / "console.js").read_text() + (STATIC / "charts.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
