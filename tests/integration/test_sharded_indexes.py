"""The sparse indexes of live jobs and reservations are not one hot partition (issue 15, item 8).

Every GSI of the jobs table, and the usage table's, is keyed on an attribute only live items carry.
Keyed on a constant, all of them would share one index partition, whose 1,000 write units a second
would throttle every write to the base table (docs/dynamodb-ceilings.md). These read the indexes
from `template.yaml`, so an index added later is checked too.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import boto3
import pytest

from stratus.localcloud.resources import Created
from stratus.template import load_template, resources_of_type
from stratus_core.adapters.dynamo.job_store import job_key
from stratus_core.adapters.dynamo.sparse_index import SHARDS, shard_of
from stratus_core.jobs import JobStatus, new_job_id
from stratus_core.services import Services
from stratus_core.tenants import TenantCreate, TenantLimits
from tests.helpers import as_previous_layout
from tests.memory import MODEL, Clock, chat_request

LIVE_ITEM_TABLES = ("JobsTable", "UsageTable")
"""Tables whose GSIs are sparse indexes of in-flight items (the keys table's are per key and tenant)."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stack(created: Created, clock: Clock) -> Services:
    services = Services(clock=clock)
    services.tenants.create(
        TenantCreate(
            tenant_id="acme",
            name="Acme",
            limits=TenantLimits(max_in_flight=1000, requests_per_minute=1000, tokens_per_minute=1_000_000),
        )
    )
    return services


def live_item_indexes() -> list[tuple[str, str, str]]:
    """(table logical id, index name, partition key attribute) of every GSI of the live-item tables."""
    tables = resources_of_type(load_template(), "AWS::DynamoDB::Table")
    return [
        (logical_id, index["IndexName"], next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "HASH"))
        for logical_id in LIVE_ITEM_TABLES
        for index in tables[logical_id]["GlobalSecondaryIndexes"]
    ]


PREVIOUS_LAYOUT = {"ActiveJobsIndex", "DispatchedJobsIndex"}
"""The jobs table's indexes of the previous layout: kept until its jobs are gone, written no more."""


def test_the_live_item_indexes_are_the_three_the_sweeper_and_the_scheduler_read_and_the_previous_two() -> None:
    assert {(table, index) for table, index, _ in live_item_indexes()} == {
        ("JobsTable", "SweepJobsIndex"),
        ("JobsTable", "WaitingJobsIndex"),
        ("UsageTable", "PendingReservationsIndex"),
        *(("JobsTable", index) for index in PREVIOUS_LAYOUT),
    }


def test_no_sparse_index_of_live_items_puts_them_under_one_partition_key(
    created: Created, stack: Services, clock: Clock
) -> None:
    # GIVEN 48 requests admitted with the API's own random job ids, all of them dispatched, 48 flex
    # requests held for the scheduler, and 48 batch lines' reservations (the ones with a `RESV#` item)
    for _ in range(48):
        job = stack.intake.accept(chat_request(max_tokens=20))
        assert stack.job_store.mark_dispatched(job, "pack_1", "s3://b/out", "s3://b/fail", clock()) is True
        stack.intake.accept(chat_request(max_tokens=20), "flex", deadline=clock() + timedelta(hours=1))
        stack.admission.reserve_batch("acme", new_job_id(), MODEL, prompt_tokens_bound=10, max_tokens=10)
    live = {
        "SweepJobsIndex": 48,
        "WaitingJobsIndex": 48,
        "PendingReservationsIndex": 48,
        **dict.fromkeys(PREVIOUS_LAYOUT, 0),
    }

    # WHEN each index is read back whole
    client = boto3.client("dynamodb")
    for logical_id, index, partition_key in live_item_indexes():
        table = created.refs[logical_id]
        entries = [
            entry
            for page in client.get_paginator("scan").paginate(TableName=table, IndexName=index)
            for entry in page["Items"]
        ]
        spread = Counter(entry[partition_key]["S"] for entry in entries)

        # THEN all of them are in it, under many partition key values, none holding a quarter of them
        # (and nothing is written into the previous layout's indexes)
        assert sum(spread.values()) == live[index], index
        if not live[index]:
            continue
        assert len(spread) > 1, f"{index}: every live item has {partition_key} = {set(spread)}"
        assert set(spread) <= set(SHARDS), index
        assert max(spread.values()) <= live[index] // 4, f"{index}: {spread}"


def test_jobs_and_reservations_written_before_sharding_are_still_swept(
    created: Created, stack: Services, clock: Clock
) -> None:
    """The code before sharding wrote "1" in every item; "1" is one of the shards."""
    # GIVEN a job in another shard whose job item carries the old constant (in the previous layout's
    # ActiveJobsIndex), and a batch line's reservation item (whose job was never written) that does too
    job_id, line_id = [f"job_{n:024x}" for n in range(1000) if shard_of(f"job_{n:024x}") != "1"][:2]
    job = stack.intake.accept(chat_request(max_tokens=20).model_copy(update={"job_id": job_id}))
    stack.admission.reserve_batch("acme", line_id, MODEL, prompt_tokens_bound=10, max_tokens=10)
    client = boto3.client("dynamodb")
    as_previous_layout(created.refs["JobsTable"], "acme", job.job_id, shard="1")
    client.update_item(
        TableName=created.refs["UsageTable"],
        Key={"pk": {"S": "TENANT#acme"}, "sk": {"S": f"RESV#{line_id}"}},
        UpdateExpression="SET pending = :old",
        ExpressionAttributeValues={":old": {"S": "1"}},
    )

    # WHEN the sweeper runs past its deadline
    later = clock.advance(hours=2)
    assert {r.job_id for r in stack.admission_store.pending_before(later, 10)} == {job.job_id, line_id}
    report = stack.sweeper.run()

    # THEN both are found: the job expired and its reservation given back, the line's released
    assert (report.overdue, report.resolved, report.orphans_released) == (1, 1, 1)
    stored = stack.job_store.get("acme", job.job_id)
    assert stored is not None and stored.status is JobStatus.EXPIRED
    assert stack.tenants.get("acme").in_flight == 0
    assert stack.admission_store.pending_before(later + timedelta(days=1), 10) == []


def test_a_job_the_previous_versions_code_finished_leaves_the_sweep_index_when_it_comes_up(
    created: Created, stack: Services, clock: Clock
) -> None:
    """During a deploy the previous version's functions still run, and their terminal update removes
    only `active` and `waiting`: a job they finish keeps its `SweepJobsIndex` entry. The sweeper's
    read removes it, and it neither takes a place among the jobs a sweep looks at nor counts as work
    the endpoint still has (which would keep an instance up)."""
    # GIVEN three interactive jobs, two of them finished by the previous version's code
    first, second, third = (stack.intake.accept(chat_request(max_tokens=20)) for _ in range(3))
    for job in (first, second):
        boto3.client("dynamodb").update_item(
            TableName=created.refs["JobsTable"],
            Key=job_key("acme", job.job_id),
            UpdateExpression="SET #status = :completed REMOVE active, waiting",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":completed": {"S": JobStatus.COMPLETED.value}},
        )
    assert stack.job_store.in_flight_count() == 3

    # WHEN the sweeper asks for one due job
    due = stack.job_store.due(clock.advance(minutes=6), 1)

    # THEN it gets the unfinished one, and the finished ones are out of the index
    assert [job.job_id for job in due] == [third.job_id]
    assert stack.job_store.in_flight_count() == 1
    assert [job.job_id for job in stack.job_store.due(clock(), 10)] == [third.job_id]
