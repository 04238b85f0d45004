"""A small JSON client for the Stratus API (base URL + a key): the CLI, the demo and the local-cloud
test use it; errors become `ClickException`s carrying the API's own message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import click


@dataclass(frozen=True)
class AdminApi:
    base_url: str
    key: str

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        url = self.base_url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        if not url.startswith(("http://", "https://")):
            raise click.UsageError(f"the API URL must be http(s): {self.base_url}")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - scheme checked above
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                message = json.loads(detail).get("error", {}).get("message") or detail
            except ValueError:
                message = detail
            raise click.ClickException(f"{method} {path}: {error.code} {message}") from None
