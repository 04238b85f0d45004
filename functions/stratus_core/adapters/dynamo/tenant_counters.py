"""The tenant's own item as its limit counters and its ledger of held reservations.

One interactive request writes the tenant item twice, each time with one conditional `UpdateItem`
and no transaction: admission adds the request to the counters and records it in `held`, settlement
takes it out of `held`, corrects the counters to the model server's counts and adds the usage that
billing reads. Besides the tenant's profile and limits, the item carries:

- `held`: a map, job id → `{"t": tokens reserved, "at": admission time in epoch µs}`, one entry per
  interactive or flex request admitted and not yet settled or released; its size is the in-flight count;
- `c_minute`, `c_minute_requests`, `c_minute_tokens`: the minute counted (`YYYY-MM-DDTHH:MM`), its counts;
- `c_month`, `c_month_tokens`: the month counted (`YYYY-MM`) and its tokens, reserved and settled;
- `u#<day>#<model>#<field>`: settled usage not yet moved to the usage table's `DAY#` rows (`USAGE_FIELDS`);
- `in_flight`: the previous layout's count of requests admitted and not yet settled (it only goes down).

**Why this is exact without transactions.** Every limit is a condition of the one write that counts
the request: `size(held) < max_in_flight`, the minute's and month's counts against the room left,
the tenant still active and its limits the ones read (`updated_at`). The entry in `held` is what
makes each write idempotent and recoverable:

- admission's condition `attribute_not_exists(held.<job>)` makes a retried admission (a write that
  landed and was answered 500, then retried by botocore) fail, and the item it returns shows the
  request already admitted;
- settlement's condition `attribute_exists(held.<job>)` applies the correction and the usage once;
  a second settlement, a redelivered notification or a retried write changes nothing;
- the job item records how the job ended before settlement touches the tenant item. If the process
  stops in between, the held entry stays, and the sweeper settles it from the job
  (`Settlement.release_orphans`); a held entry whose job was never written is released.

**Counting windows.** The minute and the month are the ones `c_minute` and `c_month` name. The
first admission of a new minute resets the minute's counts, conditional on the old key; a
correction at settlement applies only while the item still counts the reservation's own minute or
month (a past window limits nothing any more). The first admission on an item without counters
(a tenant admitted by the previous layout) starts them from that layout's `MINUTE#` and `MONTH#`
items, so an upgrade does not forget what the month has used.

**Size.** The item is billed by its size on every write: 1 write unit per KB. A tenant with one
model and a few requests in flight stays under 1 KB; each held entry adds about 50 bytes, so a
tenant with 20 requests in flight pays 2 units a write instead of 1 (`docs/dynamodb-ceilings.md`).
Usage moves to `DAY#` rows once its day is over (`roll_usage`), so the item never grows by day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from stratus_core.clock import minute_key, month_key

HELD = "held"
MINUTE = "c_minute"
MINUTE_REQUESTS = "c_minute_requests"
MINUTE_TOKENS = "c_minute_tokens"
MONTH = "c_month"
MONTH_TOKENS = "c_month_tokens"
LEGACY_IN_FLIGHT = "in_flight"
USAGE_PREFIX = "u#"
USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "prompt_cost", "completion_cost")
COUNTER_ATTRIBUTES = (HELD, MINUTE, MINUTE_REQUESTS, MINUTE_TOKENS, MONTH, MONTH_TOKENS, LEGACY_IN_FLIGHT)


@dataclass(frozen=True)
class Held:
    """One reservation recorded in the tenant item."""

    job_id: str
    tokens: int
    at: datetime

    @property
    def minute(self) -> str:
        return minute_key(self.at)

    @property
    def month(self) -> str:
        return month_key(self.at)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(at: datetime) -> int:
    """Microseconds since the epoch: exact, so a held entry gives back the very admission time."""
    return (at - EPOCH) // timedelta(microseconds=1)


def from_epoch_us(value: Any) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def held_entries(item: Mapping[str, Any]) -> dict[str, Held]:
    """The held reservations of a tenant item (plain values, `codec.from_item`)."""
    entries = item.get(HELD) or {}
    return {job: Held(job, int(v["t"]), from_epoch_us(v["at"])) for job, v in entries.items()}


def in_flight(item: Mapping[str, Any]) -> int:
    return len(item.get(HELD) or {}) + int(item.get(LEGACY_IN_FLIGHT) or 0)


def usage_attribute(day: str, model: str, name: str) -> str:
    return f"{USAGE_PREFIX}{day}#{model}#{name}"


def open_usage(item: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """Settled usage still on the tenant item, by (day, model)."""
    found: dict[tuple[str, str], dict[str, Decimal]] = {}
    for name, value in item.items():
        if not name.startswith(USAGE_PREFIX):
            continue
        day, rest = name[len(USAGE_PREFIX) :].split("#", 1)
        model, field_name = rest.rsplit("#", 1)
        found.setdefault((day, model), dict.fromkeys(USAGE_FIELDS, Decimal(0)))[field_name] = Decimal(value)
    return found


@dataclass
class Update:
    """One `UpdateItem`'s expression, built clause by clause with generated placeholder names."""

    sets: list[str] = field(default_factory=list)
    adds: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, attribute_value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attribute_value
        return placeholder

    def params(self, table: str, key: Mapping[str, Any]) -> dict[str, Any]:
        clauses = []
        if self.sets:
            clauses.append("SET " + ", ".join(self.sets))
        if self.adds:
            clauses.append("ADD " + ", ".join(self.adds))
        if self.removes:
            clauses.append("REMOVE " + ", ".join(self.removes))
        params: dict[str, Any] = {"TableName": table, "Key": dict(key), "UpdateExpression": " ".join(clauses)}
        if self.conditions:
            params["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
        if self.names:
            params["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            params["ExpressionAttributeValues"] = dict(self.values)
        return params


def num(value: int | Decimal) -> dict[str, str]:
    return {"N": format(Decimal(value), "f")}
