"""Sharded sparse indexes: "every live job" spread over `INDEX_SHARDS` index partitions.

`SweepJobsIndex`, `WaitingJobsIndex` (jobs table) and `PendingReservationsIndex` (usage table)
hold the items that are still in flight (and the previous layout's `ActiveJobsIndex`, read until its
jobs are gone: `job_store.py`); their partition key is an attribute an item carries only
while it is live. If every item wrote the same value there, the whole index would be one partition
key, and one partition takes at most 1,000 write units a second: each job puts itself in and takes
itself out of these indexes (a write each), and a GSI that cannot keep up throttles the writes to
its base table (GSI back pressure), so a few hundred requests a second would stall admission and
settlement for every tenant. So an item writes `shard_of(its job id)`, one of `"0"` … `"15"`, and a
reader queries every shard and merges by the sort key (`entries_before`). See
`docs/dynamodb-ceilings.md` for the arithmetic.

**Items written before sharding** carry `"1"`, the constant the indexes used to be keyed on. `"1"`
is one of the shards, so the readers still find them (they all sit in shard `"1"` until they leave
the index, as every live item does within its deadline): no migration, and the indexes' key schema
is unchanged, so a deploy replaces no index.

**Changing `INDEX_SHARDS`**: raising it is safe (the items written under the old count sit in
shards below it, and readers query all of the new ones); lowering it would hide the items in the
shards it drops, so it needs a migration first.

The readers query the shards one after another: each of a sweep's four index reads is 16 small
queries instead of one, a few milliseconds each, 16 × 0.5 read units when nothing is due.
"""

from __future__ import annotations

import zlib
from typing import Any

from stratus_core.adapters import aws

INDEX_SHARDS = 16
SHARDS = tuple(str(shard) for shard in range(INDEX_SHARDS))


def shard_of(key: str) -> str:
    """The shard an item with this key (a job id) lives in: stable across processes and deploys
    (CRC-32, not Python's salted `hash`), and even for random ids."""
    return SHARDS[zlib.crc32(key.encode("utf-8")) % INDEX_SHARDS]


def entries_before(
    table: str, index: str, partition_key: str, sort_key: str, before: Any, limit: int
) -> list[dict[str, Any]]:
    """The `limit` index entries with the smallest `sort_key` below `before`, across every shard,
    oldest first. Each shard gives its own oldest `limit` (paging while DynamoDB stops early), so
    the merge holds the true oldest `limit` of the whole index."""
    entries: list[dict[str, Any]] = []
    for shard in SHARDS:
        entries.extend(_shard_before(table, index, partition_key, sort_key, shard, before, limit))
    entries.sort(key=lambda entry: _order(entry, sort_key))
    return entries[:limit]


def _shard_before(
    table: str, index: str, partition_key: str, sort_key: str, shard: str, before: Any, limit: int
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#shard = :shard AND #sort < :before",
        "ExpressionAttributeNames": {"#shard": partition_key, "#sort": sort_key},
        "ExpressionAttributeValues": {":shard": {"S": shard}, ":before": before},
    }
    while len(found) < limit:
        response = aws.dynamodb().query(**request, Limit=limit - len(found))
        found.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return found


def _order(entry: dict[str, Any], sort_key: str) -> tuple[str, ...]:
    """Sort key first (ISO 8601 UTC strings order as the instants do), then the item's own key, so
    that equal sort keys come out in the same order on every run."""
    first = str(next(iter(entry[sort_key].values())))
    return (first, *(str(next(iter(value.values()))) for name, value in sorted(entry.items()) if name != sort_key))
