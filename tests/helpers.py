"""Plain helpers the tests import (fixtures live in the conftest files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratus_core.keys import IssuedKey, Principal, Scope


class FakeContext:
    function_name = "stratus-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratus-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


ADMIN = Principal(tenant_id="operators", key_id="key_00000000000000aa", scopes=frozenset({Scope.ADMIN, Scope.USAGE}))


def principal_of(key: IssuedKey) -> Principal:
    return Principal(tenant_id=key.tenant_id, key_id=key.key_id, scopes=frozenset(key.scopes))
