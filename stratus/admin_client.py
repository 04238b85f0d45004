"""A small JSON client for the Stratus API (base URL + a key): the CLI, the demo and the local-cloud
test use it; errors become `ClickException`s carrying the API's own message. A read (`GET`) answered
503 with `x-should-retry: true` (the service busy: DynamoDB still throttled after botocore's
retries) is sent again after its `Retry-After`, a few times; writes are not, since an admin write
carries no idempotency key."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import click

READ_RETRIES = 4


class Busy(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class AdminApi:
    base_url: str
    key: str

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        for _ in range(READ_RETRIES if method == "GET" else 0):
            try:
                return self._call(method, path, body, query)
            except Busy as busy:
                time.sleep(min(busy.retry_after, 10))
        try:
            return self._call(method, path, body, query)
        except Busy as busy:
            raise click.ClickException(busy.message) from None

    def every(self, path: str, query: dict[str, str] | None = None, page_size: int = 100) -> list[Any]:
        """Every item of a paged list (OpenAI's `limit`, `after` = `last_id`, `has_more`), page by page."""
        items: list[Any] = []
        after: str | None = None
        while True:
            paging = {"limit": str(page_size), **({"after": after} if after else {})}
            page = self.call("GET", path, query={**(query or {}), **paging})
            items.extend(page["data"])
            after = page.get("last_id")
            if not page.get("has_more") or not after:
                return items

    def _call(self, method: str, path: str, body: Any, query: dict[str, str] | None) -> Any:
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
            if error.code == 503 and error.headers.get("x-should-retry") == "true":
                raise Busy(f"{method} {path}: 503 {message}", float(error.headers.get("Retry-After") or 1)) from None
            raise click.ClickException(f"{method} {path}: {error.code} {message}") from None
