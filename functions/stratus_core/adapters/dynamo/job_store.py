"""Jobs table: `tenant_id` + `job_id`, so a job is only ever found under its own tenant.

**The sweeper's index.** A job that is on its way to the endpoint and not finished carries `sweep`
(its index shard) and `sweep_at` (when the sweeper should look at it next), which put it in the
sparse `SweepJobsIndex`. An interactive job is written with both, `sweep_at` its creation plus
`ResultCheckSeconds`; a deferrable one gets them when the scheduler lets it go (`let_go`). The
dispatcher's update leaves them as they are (`if_not_exists`), so that dispatching an interactive
job writes no index entry: the job enters the index once (created) and leaves it once (finished),
two index writes where the previous layout wrote four (`ActiveJobsIndex` in and out,
`DispatchedJobsIndex` in and out). When the sweeper finds a job due and neither finished nor past
its deadline (its notification is late, or it waits behind a cold start), it pushes `sweep_at` back
by as long as the job has waited (`recheck_later`), never past its deadline, where it expires.

**Held deferrable jobs** (lane `flex` or `batch`) are created with `waiting` instead, their shard,
which puts them in `WaitingJobsIndex` (sorted by `deadline`): held there, not queued on SQS, until
the scheduler lets them go (the message goes to the batch lane's queue, then `let_go` swaps
`waiting` for `sweep`). A held job past its deadline is found there by the sweeper. A job whose
message went but whose `let_go` failed is still `waiting` when it is dispatched: `mark_dispatched`
removes `waiting` and adds `sweep`. Every terminal transition removes all of them.

So `SweepJobsIndex` holds the jobs let go (or never held) and not finished: the scheduler counts it
as the work queued for or running on the endpoint (`in_flight_count`).

**While a deploy brings this layout** its functions and the previous version's run side by side
(CloudFormation updates them in any order). A job the previous code finishes keeps its `sweep`
entry: `due` removes it when it comes up. A held job the previous scheduler lets go (`REMOVE
waiting`) joins `SweepJobsIndex` when it is dispatched by this version's dispatcher; one the
previous dispatcher also dispatches is in no index and is found by nobody if its notification is
lost: deploy at a quiet hour, as the README's deploy guide says. **A rollback** to the previous
version leaves the jobs this one created unseen by its sweeper (they carry no `active`): roll
forward instead.

**Jobs of the previous layout** (in flight during the deploy that brought this one) carry `active`
(and `recheck_at` once dispatched), which put them in `ActiveJobsIndex` (by `deadline`) and
`DispatchedJobsIndex` (by `recheck_at`). The sweeper still reads `ActiveJobsIndex` for those past
their deadline, so every one of them ends; one dispatched by this version joins `SweepJobsIndex`
(`if_not_exists(sweep, ...)`) and is looked at like a new one. One the previous version dispatched
and whose notification is lost is finished from its output at its deadline rather than after
`ResultCheckSeconds`. Neither old index gets a new entry: a later release drops them, one per
deploy (DynamoDB adds or deletes one GSI per table update), and this read with them.

Every shard attribute's value is the job's index shard (`sparse_index.shard_of(job_id)`, "0" to
"15"), so that the in-flight jobs spread over 16 index partitions instead of one.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from stratus_core.adapters import aws
from stratus_core.adapters.dynamo.codec import from_item, to_attr, to_item
from stratus_core.adapters.dynamo.paging import read_page
from stratus_core.adapters.dynamo.sparse_index import SHARDS, entries_before, shard_of
from stratus_core.adapters.dynamo.transactions import conditionally, created
from stratus_core.batches.chunks import lines_of
from stratus_core.errors import Conflict
from stratus_core.jobs import Job, JobStatus, JobSummary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

SWEEP_INDEX = "SweepJobsIndex"
WAITING_INDEX = "WaitingJobsIndex"
LEGACY_ACTIVE_INDEX = "ActiveJobsIndex"  # the previous layout's; read until its jobs are gone
MAX_RECHECK = timedelta(hours=1)
NON_TERMINAL = {":queued": {"S": JobStatus.QUEUED.value}, ":dispatched": {"S": JobStatus.DISPATCHED.value}}


def job_key(tenant_id: str, job_id: str) -> dict[str, Any]:
    return {"tenant_id": {"S": tenant_id}, "job_id": {"S": job_id}}


def result_attribute(result: dict[str, Any]) -> dict[str, Any]:
    """A job's answer as stored: its JSON, compressed (`result_z`).

    An update is billed on the larger of the item's two images, one write unit per KB: a chat
    completion's JSON is mostly keys and text that zlib shrinks 2-3 times, which keeps a job with a
    few hundred tokens of answer under 1 KB, one write unit at settlement instead of two or three.
    Jobs stored before carry `result_json` (plain text), which `parse_job` reads too."""
    return {"B": zlib.compress(json.dumps(result, separators=(",", ":")).encode(), 6)}


def within_requests(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first index entries whose jobs carry up to `limit` requests in all (the first always)."""
    taken: list[dict[str, Any]] = []
    requests = 0
    for entry in entries:
        requests += lines_of(entry["job_id"]["S"])
        if taken and requests > limit:
            break
        taken.append(entry)
    return taken


def job_item(job: Job, retention_seconds: int, result_check: timedelta) -> dict[str, Any]:
    values = job.model_dump(exclude={"result"})
    item = to_item({**values, "expires_at": int(job.created_at.timestamp()) + retention_seconds})
    if job.result is not None:
        item["result_z"] = result_attribute(job.result)
    if job.status is JobStatus.QUEUED and job.deferrable:
        item["waiting"] = {"S": shard_of(job.job_id)}
    elif not job.status.is_terminal:
        item.update(sweep_entry(job, job.created_at + result_check))
    return item


def sweep_entry(job: Job, at: datetime) -> dict[str, Any]:
    """The attributes that put a job in `SweepJobsIndex`, to be looked at `at` (its deadline if sooner)."""
    return {"sweep": {"S": shard_of(job.job_id)}, "sweep_at": to_attr(min(at, job.deadline))}


def parse_job(item: dict[str, Any]) -> Job:
    values = from_item(item)
    result = values.pop("result_json", None)
    compressed = values.pop("result_z", None)
    if compressed is not None:
        result = zlib.decompress(bytes(compressed)).decode()
    for internal in ("active", "expires_at", "recheck_at", "sweep", "sweep_at", "waiting"):
        values.pop(internal, None)
    if result is not None:
        values["result"] = json.loads(result)
    return Job.model_validate(values)


SUMMARY_ATTRIBUTES = ("job_id", "status", "model", "lane", "created_at", "finished_at", "usage", "error")


def job_summary(item: dict[str, Any]) -> JobSummary:
    """A job's summary from its item's `SUMMARY_ATTRIBUTES`."""
    values = from_item(item)
    finished = values.get("finished_at")
    return JobSummary(
        id=values["job_id"],
        status=values["status"],
        model=values["model"],
        lane=values.get("lane", "interactive"),
        created_at=int(datetime.fromisoformat(values["created_at"]).timestamp()),
        finished_at=int(datetime.fromisoformat(finished).timestamp()) if finished else None,
        usage=values.get("usage"),
        error=values.get("error"),
    )


class DynamoJobStore:
    def __init__(self, table: str, retention_seconds: int, result_check: timedelta = timedelta(minutes=5)) -> None:
        self.table = table
        self.retention = retention_seconds
        self.result_check = result_check

    def create(self, job: Job) -> None:
        """Store a new job; `Conflict` if another job with its id exists. The job's own put that
        landed on an attempt answered 500 is not a conflict (`transactions.created`): the caller
        would otherwise take the job for an earlier request's and never queue its message."""
        item = job_item(job, self.retention, self.result_check)
        put = lambda: aws.dynamodb().put_item(  # noqa: E731
            TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(job_id)"
        )

        def stored() -> dict[str, Any] | None:
            key = job_key(job.tenant_id, job.job_id)
            return aws.dynamodb().get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

        if not created(put, stored, item):
            raise Conflict(f"job {job.job_id} exists")

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        response = aws.dynamodb().get_item(TableName=self.table, Key=job_key(tenant_id, job_id), ConsistentRead=True)
        item = response.get("Item")
        return parse_job(item) if item else None

    def recent(self, tenant_id: str, limit: int, after: str | None) -> list[JobSummary]:
        """One `Query` of the tenant's partition backwards from `after`, bounded by `limit`: job ids
        are time-ordered (`new_job_id`), so the partition's order is the jobs' age. Only `job_…` ids
        (a batch line's `batch_…-N` sorts before them and is never read), and only the attributes a
        summary shows (the request and the answer stay in the table)."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "tenant_id = :tenant AND begins_with(job_id, :prefix)",
            "ExpressionAttributeValues": {":tenant": {"S": tenant_id}, ":prefix": {"S": "job_"}},
            "ProjectionExpression": ", ".join(f"#{name}" for name in SUMMARY_ATTRIBUTES),
            "ExpressionAttributeNames": {f"#{name}": name for name in SUMMARY_ATTRIBUTES},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        start = job_key(tenant_id, after) if after is not None else None
        return [job_summary(item) for item in read_page("query", params, limit, start).items]

    def mark_dispatched(
        self, job: Job, pack_id: str, output_location: str | None, failure_location: str | None, at: datetime
    ) -> bool:
        """queued → dispatched, and no longer held; False if the job had moved on (already
        dispatched, or finished). A job already in `SweepJobsIndex` keeps its entry as it is (no
        index write); one that is not (held, its `let_go` failed; or written by the previous
        layout) joins it, to be looked at `ResultCheckSeconds` from now."""
        entry = sweep_entry(job, at + self.result_check)
        sets = [
            "#status = :dispatched",
            "pack_id = :pack",
            "dispatched_at = :at",
            "sweep = if_not_exists(sweep, :sweep)",
            "sweep_at = if_not_exists(sweep_at, :sweep_at)",
        ]
        values: dict[str, Any] = {
            ":dispatched": {"S": JobStatus.DISPATCHED.value},
            ":queued": {"S": JobStatus.QUEUED.value},
            ":pack": {"S": pack_id},
            ":at": to_attr(at),
            ":sweep": entry["sweep"],
            ":sweep_at": entry["sweep_at"],
        }
        for name, location in (("output_location", output_location), ("failure_location", failure_location)):
            if location:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = {"S": location}
        updated = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self.table,
                Key=job_key(job.tenant_id, job.job_id),
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE #body, waiting",  # packed: body and hold done
                ConditionExpression="#status = :queued",
                ExpressionAttributeNames={"#status": "status", "#body": "body"},
                ExpressionAttributeValues=values,
            )
        )
        return updated is not None

    def for_batch(self, tenant_id: str, batch_id: str) -> list[Job]:
        """Every job of a batch: their ids are the batch id, a dash and the line number."""
        jobs: list[Job] = []
        paginator = aws.dynamodb().get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="tenant_id = :tenant AND begins_with(job_id, :prefix)",
            ExpressionAttributeValues={":tenant": {"S": tenant_id}, ":prefix": {"S": f"{batch_id}-"}},
            ConsistentRead=True,
        ):
            jobs.extend(parse_job(item) for item in page.get("Items", []))
        return jobs

    def due(self, before: datetime, limit: int) -> list[Job]:
        """Up to `limit` unfinished jobs the sweeper should look at before `before`, the longest
        due first: those in `SweepJobsIndex` whose `sweep_at` has come, those held past their
        deadline (`WaitingJobsIndex`), and the previous layout's past theirs (`ActiveJobsIndex`).
        Each is read again from the table (the indexes are eventually consistent and keys only).

        A finished job whose item still carries `sweep` was ended by the previous version's code
        (its functions and this version's run side by side while a deploy updates them, in any
        order; its terminal update removes only `active` and `waiting`). Its entry is removed here,
        so that it neither holds a place among the `limit` nor counts as work in flight."""
        moment = to_attr(before)
        jobs: list[Job] = []
        seen: set[tuple[str, str]] = set()
        for _ in range(4):  # another read only when finished entries took places in this one
            wanted = limit - len(jobs) + len(seen)  # the index may still list what was removed
            entries = [
                *entries_before(self.table, SWEEP_INDEX, "sweep", "sweep_at", moment, wanted),
                *entries_before(self.table, WAITING_INDEX, "waiting", "deadline", moment, wanted),
                *entries_before(self.table, LEGACY_ACTIVE_INDEX, "active", "deadline", moment, wanted),
            ]
            entries.sort(key=lambda entry: str(next(iter((entry.get("sweep_at") or entry["deadline"]).values()))))
            swept = {(e["tenant_id"]["S"], e["job_id"]["S"]) for e in entries if "sweep" in e}
            keys = dict.fromkeys((e["tenant_id"]["S"], e["job_id"]["S"]) for e in entries)
            finished = 0
            for key in (key for key in keys if key not in seen):
                seen.add(key)
                job = self.get(*key)
                if job is not None and not job.status.is_terminal:
                    jobs.append(job)
                elif job is not None and key in swept:
                    self._forget_finished(*key)
                    finished += 1
                if len(jobs) == limit:
                    return jobs
            if not finished:
                break
        return jobs

    def _forget_finished(self, tenant_id: str, job_id: str) -> None:
        conditionally(  # only while it is finished: a job cannot become unfinished, so this is only a guard
            lambda: aws.dynamodb().update_item(
                TableName=self.table,
                Key=job_key(tenant_id, job_id),
                UpdateExpression="REMOVE sweep, sweep_at",
                ConditionExpression="attribute_exists(sweep) AND NOT #status IN (:queued, :dispatched)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=NON_TERMINAL,
            )
        )

    # -- deferrable jobs held for the scheduler --------------------------------------------------------
    def held_summary(self) -> tuple[int, datetime | None]:
        """Every shard of `WaitingJobsIndex`, read whole (keys and deadlines only: ~100 bytes a job;
        a batch chunk's job counts its lines, which its id says: `chunks.lines_of`)."""
        count, earliest = 0, None
        for shard in SHARDS:
            for number, page in enumerate(self._shard_pages(WAITING_INDEX, "waiting", shard)):
                items = page.get("Items", [])
                count += sum(lines_of(item["job_id"]["S"]) for item in items)
                if number == 0 and items:  # a shard's first entry has its earliest deadline
                    deadline = datetime.fromisoformat(items[0]["deadline"]["S"])
                    earliest = deadline if earliest is None or deadline < earliest else earliest
        return count, earliest

    def held(self, limit: int) -> list[Job]:
        """Held jobs, earliest deadline first, carrying up to `limit` requests (at least one job)."""
        if limit <= 0:
            return []
        entries = entries_before(self.table, WAITING_INDEX, "waiting", "deadline", {"S": "~"}, limit)
        jobs = (self.get(item["tenant_id"]["S"], item["job_id"]["S"]) for item in within_requests(entries, limit))
        return [job for job in jobs if job is not None and job.status is JobStatus.QUEUED]

    def let_go(self, job: Job, at: datetime) -> bool:
        """No longer held, and in `SweepJobsIndex` to be looked at `ResultCheckSeconds` after `at`."""
        entry = sweep_entry(job, at + self.result_check)
        updated = conditionally(
            lambda: aws.dynamodb().update_item(
                TableName=self.table,
                Key=job_key(job.tenant_id, job.job_id),
                UpdateExpression="SET sweep = :sweep, sweep_at = :sweep_at REMOVE waiting",
                ConditionExpression="attribute_exists(waiting) AND #status = :queued",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":queued": {"S": JobStatus.QUEUED.value},
                    ":sweep": entry["sweep"],
                    ":sweep_at": entry["sweep_at"],
                },
            )
        )
        return updated is not None

    def in_flight_count(self) -> int:
        """Requests let go (an interactive one from its creation) and not finished: the keys of
        `SweepJobsIndex`, a chunk's job counting its lines."""
        pages = (self._shard_pages(SWEEP_INDEX, "sweep", shard) for shard in SHARDS)
        return sum(
            lines_of(item["job_id"]["S"])
            for shard_pages in pages
            for page in shard_pages
            for item in page.get("Items", [])
        )

    def _shard_pages(self, index: str, partition_key: str, shard: str, **extra: Any) -> Any:
        """Every page of one shard of a sparse index (botocore's query paginator)."""
        return (
            aws.dynamodb()
            .get_paginator("query")
            .paginate(
                TableName=self.table,
                IndexName=index,
                KeyConditionExpression=f"{partition_key} = :shard",
                ExpressionAttributeValues={":shard": {"S": shard}},
                **extra,
            )
        )

    def recheck_later(self, job: Job, now: datetime) -> None:
        """Not finished yet: look again after as long as it has waited since its dispatch (or, not
        dispatched yet, its creation), so that the checks of a job in a long queue thin out: at
        least the configured interval, at most an hour, and at its deadline at the latest. A job
        of the previous layout joins `SweepJobsIndex` here."""
        waited = now - (job.dispatched_at or job.created_at)
        entry = sweep_entry(job, now + min(max(self.result_check, waited), MAX_RECHECK))
        conditionally(  # not applied when it finished meanwhile: nothing to look for any more
            lambda: aws.dynamodb().update_item(
                TableName=self.table,
                Key=job_key(job.tenant_id, job.job_id),
                UpdateExpression="SET sweep = :sweep, sweep_at = :sweep_at",
                ConditionExpression="#status IN (:queued, :dispatched) AND attribute_not_exists(waiting)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":sweep": entry["sweep"], ":sweep_at": entry["sweep_at"], **NON_TERMINAL},
            )
        )

    def terminal_item(
        self, job: Job, status: JobStatus, at: datetime, sets: dict[str, dict[str, Any]]
    ) -> TransactWriteItemTypeDef:
        """The transaction item that moves a non-terminal job to `status` (and out of the index)."""
        assignments = ["#status = :status", "finished_at = :finished_at", *(f"#{k} = :{k}" for k in sets)]
        return {
            "Update": {
                "TableName": self.table,
                "Key": job_key(job.tenant_id, job.job_id),
                "UpdateExpression": "SET " + ", ".join(assignments) + " REMOVE active, waiting, sweep, sweep_at",
                "ConditionExpression": "#status IN (:queued, :dispatched)",
                "ExpressionAttributeNames": {"#status": "status", **{f"#{k}": k for k in sets}},
                "ExpressionAttributeValues": {
                    ":status": {"S": status.value},
                    ":finished_at": to_attr(at),
                    **NON_TERMINAL,
                    **{f":{k}": v for k, v in sets.items()},
                },
            }
        }
