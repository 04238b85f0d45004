"""Plain Python values ⇄ DynamoDB attribute values, for the low-level client."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer


class _PositionalSerializer(TypeSerializer):
    """Numbers in positional notation (`0.00000005`, not `5E-8`): DynamoDB takes both, but
    positional text is what every consumer (moto's `ADD`, people reading items) handles."""

    def _serialize_n(self, value: Any) -> str:
        number = DYNAMODB_CONTEXT.create_decimal(value)
        if not number.is_finite():
            raise TypeError("Infinity and NaN not supported")
        return format(number, "f")


_serializer = _PositionalSerializer()
_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def to_attr(value: Any) -> Any:
    return _serializer.serialize(_plain(value))


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Serialise a mapping, leaving out `None` values (absent, not NULL)."""
    return {key: to_attr(value) for key, value in _plain(values).items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}
