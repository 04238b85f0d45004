"""Powertools' HTTP resolver, with the request it is resolving kept per thread.

Powertools keeps the event being resolved in a class attribute (`BaseRouter.current_event`, and
`lambda_context`) and the route being run in the resolver's `context` dict, which `resolve` clears
when it ends. That is right on Lambda, which hands one event at a time to an execution
environment. It is wrong wherever one process resolves requests concurrently — the local cloud's
gateway runs the API function for concurrent clients in threads — where one request's `resolve`
cleared another's context mid-flight (a `KeyError: '_route'`, a 500: seen under 50 concurrent
clients) and could hand a route another request's event, and so another tenant's identity. Here
each thread resolves with its own event, Lambda context and resolver context; on Lambda nothing
changes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext


class PerThreadResolver(APIGatewayHttpResolver):
    def __init__(self, **kwargs: Any) -> None:
        self._local = threading.local()
        super().__init__(**kwargs)

    @property
    def context(self) -> dict[str, Any]:
        state = self._local.__dict__
        return state.setdefault("context", {})  # type: ignore[no-any-return]

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._local.context = value

    @property
    def current_event(self) -> Any:
        return getattr(self._local, "current_event", None)

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._local.current_event = value

    @property
    def lambda_context(self) -> Any:
        return getattr(self._local, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._local.lambda_context = value

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.current_event = self._to_proxy_event(dict(event))
        self.lambda_context = context
        return super().resolve(event, context)
