"""Reading a sharded sparse index: every shard, every page, the oldest `limit` overall."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.sparse_index import INDEX_SHARDS, SHARDS, entries_before, shard_of


class PagingIndex:
    """A `Query` on one index that, like DynamoDB at its 1 MB cap, stops after `page` entries even
    when `Limit` allows more, and says where to go on (`LastEvaluatedKey`)."""

    def __init__(self, entries: list[dict[str, Any]], page: int) -> None:
        self.entries = entries
        self.page = page
        self.queried: list[str] = []

    def query(self, **request: Any) -> dict[str, Any]:
        shard = request["ExpressionAttributeValues"][":shard"]["S"]
        before = request["ExpressionAttributeValues"][":before"]["S"]
        self.queried.append(shard)
        matching = sorted(
            (e for e in self.entries if e["active"]["S"] == shard and e["deadline"]["S"] < before),
            key=lambda e: e["deadline"]["S"],
        )
        start = int(request.get("ExclusiveStartKey", {}).get("at", {}).get("N", "0"))
        end = start + min(self.page, request["Limit"])
        response: dict[str, Any] = {"Items": matching[start:end]}
        if end < len(matching):
            response["LastEvaluatedKey"] = {"at": {"N": str(end)}}
        return response


def entry(job_id: str, deadline: str) -> dict[str, Any]:
    return {
        "tenant_id": {"S": "acme"},
        "job_id": {"S": job_id},
        "active": {"S": shard_of(job_id)},
        "deadline": {"S": deadline},
    }


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> PagingIndex:
    # 100 jobs over the shards, deadlines one second apart, plus one not yet due
    entries = [entry(f"job_{n:024x}", f"2026-11-28T12:{n // 60:02d}:{n % 60:02d}+00:00") for n in range(100)]
    entries.append(entry("job_late", "2026-11-28T13:00:00+00:00"))
    paging = PagingIndex(entries, page=2)
    monkeypatch.setattr(aws, "dynamodb", lambda: paging)
    return paging


def test_job_ids_spread_over_every_shard() -> None:
    counts = Counter(shard_of(f"job_{n:024x}") for n in range(1600))
    assert set(counts) == set(SHARDS) and len(SHARDS) == INDEX_SHARDS
    assert min(counts.values()) >= 90 and max(counts.values()) <= 110  # 100 each on average


@pytest.mark.parametrize("limit", [1, 5, 37, 100, 500])
def test_the_oldest_entries_come_back_across_shards_and_pages(index: PagingIndex, limit: int) -> None:
    found = entries_before("Jobs", "ActiveJobsIndex", "active", "deadline", {"S": "2026-11-28T12:59:00+00:00"}, limit)
    assert [e["job_id"]["S"] for e in found] == [f"job_{n:024x}" for n in range(min(limit, 100))]
    assert set(index.queried) == set(SHARDS)


def test_no_shard_is_read_past_the_limit(index: PagingIndex) -> None:
    entries_before("Jobs", "ActiveJobsIndex", "active", "deadline", {"S": "2026-11-28T12:59:00+00:00"}, 3)
    assert len(index.queried) <= INDEX_SHARDS * 2  # pages of 2: at most two queries a shard for 3 entries
