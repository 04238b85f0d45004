"""The read routes a web console pages through, on moto: a tenant's jobs, limits and keys; the
operators' tenants, batches, usage and invoices across tenants. Every list pages the way OpenAI's do
(`limit`, `after` = `last_id`, `has_more`), and every page is one bounded DynamoDB read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratus_core.adapters import aws
from stratus_core.contract import JobError, Usage
from stratus_core.jobs import Job, JobStatus, new_job_id
from stratus_core.keys import IssuedKey, Scope
from stratus_core.services import Services
from tests.helpers import ApiResponse, bill, principal_of

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass
class Reads:
    """The items each `Query` and `Scan` of the API function returned, per table."""

    items: dict[str, list[int]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        return sum(self.items.get(table, []))


@pytest.fixture
def reads(cloud: dict[str, str]) -> Iterator[Reads]:
    found = Reads()

    def after_call(model: Any, parsed: dict[str, Any], params: dict[str, Any], **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            table = str(params.get("TableName", "")).rsplit("-", 1)[-1]
            found.items.setdefault(table, []).append(int(parsed.get("Count", 0)))

    def before_call(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["params"] = params

    events = aws.dynamodb().meta.events
    events.register("provide-client-params.dynamodb.*", before_call)

    def on_after(**kwargs: Any) -> None:
        after_call(params=kwargs["context"].get("params", {}), **kwargs)

    events.register("after-call.dynamodb.*", on_after)
    yield found
    events.unregister("after-call.dynamodb.*", on_after)
    events.unregister("provide-client-params.dynamodb.*", before_call)


def stored_job(tenant_id: str, at: datetime, **changes: Any) -> Job:
    """A job item as the intake and settlement leave it, created at `at`."""
    job = Job(
        job_id=new_job_id(at),
        tenant_id=tenant_id,
        kind="chat",
        model=MODEL,
        status=JobStatus.QUEUED,
        created_at=at,
        deadline=at + timedelta(hours=1),
        body_key=f"requests/{tenant_id}/x.json",
    ).model_copy(update=changes)
    Services().job_store.create(job)
    return job


def pages(call_api: Api, path: str, principal: Any = None, limit: int = 2, **query: str) -> list[dict[str, Any]]:
    """Every page of a list, following `last_id` while `has_more`."""
    found, after = [], None
    kwargs = {"principal": principal} if principal is not None else {}
    for _ in range(50):
        sent = {"limit": str(limit), **query, **({"after": after} if after else {})}
        page = call_api("GET", path, query=sent, **kwargs)
        assert page.status == 200, page.body
        found.append(page.body)
        after = page.body["last_id"]
        if not page.body["has_more"]:
            return found
    raise AssertionError("the list never ended")


# -- GET /v1/jobs ----------------------------------------------------------------------------------


def test_new_job_ids_sort_by_creation_time_and_keep_their_shape() -> None:
    earlier, later = new_job_id(T0), new_job_id(T0 + timedelta(milliseconds=1))
    assert earlier < later
    assert earlier[4:15] == format(int(T0.timestamp() * 1000), "011x")
    for job_id in (earlier, later, new_job_id()):
        assert len(job_id) == 28 and job_id.startswith("job_") and int(job_id[4:], 16) >= 0


def test_jobs_are_listed_newest_first_in_pages_without_batch_lines_or_answers(
    call_api: Api, make_tenant: Callable[..., IssuedKey], reads: Reads
) -> None:
    # GIVEN five jobs of acme a second apart (one completed, one failed), a batch line, and globex's job
    acme = principal_of(make_tenant("acme"))
    globex = principal_of(make_tenant("globex"))
    jobs = [stored_job("acme", T0 + timedelta(seconds=i)) for i in range(5)]
    finished = T0 + timedelta(minutes=1)
    done = stored_job(
        "acme",
        T0 + timedelta(seconds=5),
        status=JobStatus.COMPLETED,
        finished_at=finished,
        usage=Usage.of(10, 4),
        result={"choices": [{"message": {"content": "the secret answer"}}]},
        lane="flex",
    )
    failed = stored_job(
        "acme",
        T0 + timedelta(seconds=6),
        status=JobStatus.FAILED,
        finished_at=finished,
        error=JobError(code="inference_failed", message="the model crashed"),
    )
    stored_job("acme", T0 + timedelta(seconds=7), job_id="batch_" + "a" * 24 + "-0", batch_id="batch_" + "a" * 24)
    globex_job = stored_job("globex", T0 + timedelta(seconds=8))

    # WHEN acme pages through its jobs three at a time
    listed = pages(call_api, "/v1/jobs", acme, limit=3)

    # THEN newest first, its own `job_…` jobs only, three a page, each page one bounded Query
    assert [[job["id"] for job in page["data"]] for page in listed] == [
        [failed.job_id, done.job_id, jobs[4].job_id],
        [jobs[3].job_id, jobs[2].job_id, jobs[1].job_id],
        [jobs[0].job_id],
    ]
    assert [(page["first_id"], page["last_id"], page["has_more"]) for page in listed] == [
        (failed.job_id, jobs[4].job_id, True),
        (jobs[3].job_id, jobs[1].job_id, True),
        (jobs[0].job_id, jobs[0].job_id, False),
    ]
    assert listed[0]["data"][0] == {
        "id": failed.job_id,
        "object": "job",
        "status": "failed",
        "model": MODEL,
        "lane": "interactive",
        "created_at": int((T0 + timedelta(seconds=6)).timestamp()),
        "finished_at": int(finished.timestamp()),
        "usage": None,
        "error": {"code": "inference_failed", "message": "the model crashed"},
    }
    assert listed[0]["data"][1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    assert listed[0]["data"][1]["lane"] == "flex"
    assert "the secret answer" not in json.dumps(listed)
    assert globex_job.job_id not in json.dumps(listed)
    assert reads.items["JobsTable"] == [4, 4, 1]  # a page and one more to know there is a next
    assert [job["id"] for job in pages(call_api, "/v1/jobs", globex)[0]["data"]] == [globex_job.job_id]


def test_a_request_made_through_the_api_is_the_first_job_listed(
    call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    acme = principal_of(make_tenant("acme"))
    stored_job("acme", datetime.now(UTC) - timedelta(hours=1))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    made = call_api("POST", "/v1/chat/completions", body, principal=acme, headers={"prefer": "respond-async"})

    assert made.status == 202, made.body
    first = call_api("GET", "/v1/jobs", principal=acme, query={"limit": "1"}).body
    assert (first["data"][0]["id"], first["data"][0]["status"], first["has_more"]) == (made.body["id"], "queued", True)


def test_jobs_list_refuses_bad_paging_and_keys_without_inference(
    call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    acme = principal_of(make_tenant("acme"))
    usage_only = principal_of(make_tenant("globex", scopes=[Scope.USAGE]))
    for query, param in [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"after": "batch_x"}, "after")]:
        refused = call_api("GET", "/v1/jobs", principal=acme, query=query)
        assert (refused.status, refused.body["error"]["param"]) == (400, param)
    assert call_api("GET", "/v1/jobs", principal=usage_only).body["error"]["code"] == "insufficient_scope"
    empty = call_api("GET", "/v1/jobs", principal=acme).body
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


# -- GET /v1/limits --------------------------------------------------------------------------------


def outside_a_minute_boundary() -> None:
    """The counts of a minute are compared: start early enough in one that the test ends in it."""
    if datetime.now(UTC).second >= 55:
        time.sleep(61 - datetime.now(UTC).second)


def test_limits_show_what_admission_counted_and_equal_usage_once_settled(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    # GIVEN acme with limits, globex busy, and acme's one request in flight
    acme = principal_of(
        make_tenant("acme", requests_per_minute=10, tokens_per_minute=10_000, tokens_per_month=1_000_000)
    )
    make_tenant("globex")
    outside_a_minute_boundary()
    bill("globex", 5_000, 5_000)
    from tests.helpers import completion_request

    held = services.intake.accept(completion_request("acme"))

    # WHEN acme reads its limits
    during = call_api("GET", "/v1/limits", principal=acme)

    # THEN the reservation counts (its worst case) until it settles; globex's request never appears
    assert during.status == 200, during.body
    reserved = services.admission_store.get("acme", held.job_id)
    assert reserved is not None
    now = datetime.now(UTC)
    assert during.body["used"] == {
        "requests_this_minute": 1,
        "tokens_this_minute": reserved.tokens,
        "tokens_this_month": reserved.tokens,
        "in_flight": 1,
    }
    assert during.body["remaining"] == {
        "requests_this_minute": 9,
        "tokens_this_minute": 10_000 - reserved.tokens,
        "tokens_this_month": 1_000_000 - reserved.tokens,
        "in_flight": 15,
    }
    assert (during.body["object"], during.body["tenant_id"], during.body["month"]) == (
        "limits",
        "acme",
        now.strftime("%Y-%m"),
    )
    assert during.body["limits"] == {
        "requests_per_minute": 10,
        "tokens_per_minute": 10_000,
        "tokens_per_month": 1_000_000,
        "max_in_flight": 16,
    }
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert during.body["minute_resets_at"] == int(next_minute.timestamp())

    # WHEN it settles with the model server's counts, and another request completes
    assert services.settlement.complete(held, Usage.of(100, 30), {"object": "text_completion"})
    bill("acme", 7, 3)
    after = call_api("GET", "/v1/limits", principal=acme).body

    # THEN the counts are what was used, and this month's tokens are what /v1/usage says
    assert after["used"] == {
        "requests_this_minute": 2,
        "tokens_this_minute": 140,
        "tokens_this_month": 140,
        "in_flight": 0,
    }
    usage = call_api("GET", "/v1/usage", principal=acme).body
    assert after["used"]["tokens_this_month"] == usage["totals"]["total_tokens"] == 140
    assert after["remaining"]["in_flight"] == 16


def test_limits_of_a_past_minute_count_zero_and_remaining_never_goes_below_zero(
    call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    acme = principal_of(make_tenant("acme", tokens_per_month=1_000_000))
    bill("acme", 100, 30, at=datetime.now(UTC) - timedelta(minutes=2))
    call_api("PATCH", "/admin/tenants/acme", {"limits": {"tokens_per_month": 10, "max_in_flight": 0}})

    limits = call_api("GET", "/v1/limits", principal=acme).body

    assert limits["used"]["requests_this_minute"] == limits["used"]["tokens_this_minute"] == 0
    month_of_bill = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m")
    assert limits["used"]["tokens_this_month"] == (130 if month_of_bill == limits["month"] else 0)
    assert limits["remaining"]["tokens_this_month"] == max(0, 10 - limits["used"]["tokens_this_month"])
    assert limits["remaining"]["in_flight"] == 0


def test_limits_and_keys_need_the_usage_scope(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    inference_only = principal_of(make_tenant("acme", scopes=[Scope.INFERENCE]))
    for path in ("/v1/limits", "/v1/keys"):
        assert call_api("GET", path, principal=inference_only).body["error"]["code"] == "insufficient_scope"


# -- GET /v1/keys ----------------------------------------------------------------------------------


def test_a_tenant_sees_its_own_keys_and_never_another_tenants_or_a_secret(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    acme_key = make_tenant("acme")
    globex_key = make_tenant("globex")
    from stratus_core.keys import KeyCreate

    second = services.keys.create("acme", KeyCreate(scopes=[Scope.BATCH]))
    services.keys.revoke(second.key_id)

    listed = call_api("GET", "/v1/keys", principal=principal_of(acme_key), query={"tenant_id": "globex"})

    assert listed.status == 200, listed.body
    assert listed.body["object"] == "list"
    assert [(k["key_id"], k["tenant_id"], k["status"]) for k in listed.body["data"]] == [
        (acme_key.key_id, "acme", "active"),
        (second.key_id, "acme", "revoked"),
    ]
    assert listed.body["data"][0]["prefix"] == acme_key.api_key[:9]
    text = json.dumps(listed.body)
    for secret in (acme_key.api_key, second.api_key, globex_key.api_key, globex_key.key_id):
        assert secret not in text
    assert "key_hash" not in text and "api_key" not in text
