"""The read routes a web console pages through, on moto: a tenant's jobs, limits and keys; the
operators' tenants, batches, usage and invoices across tenants. Every list pages the way OpenAI's do
(`limit`, `after` = `last_id`, `has_more`), and every page is one bounded DynamoDB read."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from stratus import operator_commands
from stratus.admin_client import AdminApi
from stratus.cli import main
from stratus_core.adapters import aws
from stratus_core.batches.models import BatchStatus, RequestCounts, StoredBatch
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


# -- GET /admin/tenants ----------------------------------------------------------------------------


def test_admin_pages_through_tenants_each_with_its_months_usage(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], reads: Reads
) -> None:
    # GIVEN five tenants, two with usage this month and one with usage last month only
    for tenant_id in ("umbrella", "acme", "initech", "hooli", "globex"):
        make_tenant(tenant_id, created=datetime.now(UTC) - timedelta(days=62))
    bill("acme", 100, 20)
    bill("acme", 7, 3)
    bill("globex", 1_000_000, 1_000_000)
    bill("hooli", 5, 5, at=datetime.now(UTC).replace(day=1) - timedelta(days=3))

    # WHEN the admin pages through them two at a time
    listed = pages(call_api, "/admin/tenants")

    # THEN every tenant once, each page sorted by id, with this month's usage; each page reads two items
    ids = [[tenant["tenant_id"] for tenant in page["data"]] for page in listed]
    assert all(page == sorted(page) for page in ids)
    assert sorted(tenant for page in ids for tenant in page) == ["acme", "globex", "hooli", "initech", "umbrella"]
    assert all(len(page) == 2 for page in ids[:2])
    month = datetime.now(UTC).strftime("%Y-%m")
    usage = {tenant["tenant_id"]: tenant["month_usage"] for page in listed for tenant in page["data"]}
    assert usage["acme"] == {"month": month, "requests": 2, "total_tokens": 130, "cost": "0.0000088"}
    assert usage["globex"] == {"month": month, "requests": 1, "total_tokens": 2_000_000, "cost": "0.2"}
    assert usage["hooli"] == usage["initech"] == {"month": month, "requests": 0, "total_tokens": 0, "cost": "0"}
    assert all(count <= 2 for count in reads.items["TenantsTable"])
    assert reads.count("TenantsTable") == 5
    first = listed[0]
    assert (first["object"], first["first_id"], first["has_more"]) == ("list", ids[0][0], True)
    assert set(first["data"][0]) >= {"tenant_id", "name", "status", "limits", "in_flight", "month_usage"}


def test_the_cli_lists_every_tenant_page_by_page(
    call_api: Api, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    for tenant_id in ("umbrella", "acme", "initech", "hooli", "globex"):
        make_tenant(tenant_id)
    asked: list[dict[str, str]] = []

    def in_process(self: AdminApi, method: str, path: str, body: Any, query: dict[str, str] | None) -> Any:
        asked.append(dict(query or {}))
        return call_api(method, path, body, query={**(query or {}), "limit": "2"}).body

    monkeypatch.setattr(AdminApi, "_call", in_process)
    result = CliRunner().invoke(main, ["tenants", "list", "--api-url", "http://x", "--admin-key", "sk-x", "--json"])

    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["data"]
    assert [tenant["tenant_id"] for tenant in listed] == ["acme", "globex", "hooli", "initech", "umbrella"]
    assert len(asked) == 3 and "after" not in asked[0] and all("after" in query for query in asked[1:])
    assert operator_commands.TENANT_COLUMNS[0] == "tenant_id"


# -- GET /admin/batches ----------------------------------------------------------------------------


def stored_batch(tenant_id: str, number: int, created_at: int) -> StoredBatch:
    batch = StoredBatch(
        id=f"batch_{number:024x}",
        tenant_id=tenant_id,
        endpoint="/v1/chat/completions",
        input_file_id="file-" + "0" * 24,
        status=BatchStatus.IN_PROGRESS,
        created_at=created_at,
        expires_at=created_at + 86_400,
        request_counts=RequestCounts(total=10, completed=number, failed=1),
    )
    Services().batch_store.create(batch)
    return batch


def test_admin_pages_through_every_tenants_batches_with_their_progress(
    call_api: Api, make_tenant: Callable[..., IssuedKey], reads: Reads
) -> None:
    # GIVEN batches of two tenants
    make_tenant("acme")
    make_tenant("globex")
    made = [stored_batch("acme" if n % 2 else "globex", n, 1_790_000_000 + n) for n in range(1, 6)]

    # WHEN the admin pages through every tenant's batches, two at a time
    listed = pages(call_api, "/admin/batches")

    # THEN each batch once with its tenant and progress, each page newest first, two items read a page
    seen = [(b["id"], b["tenant_id"], b["request_counts"]) for page in listed for b in page["data"]]
    assert sorted(seen) == sorted((b.id, b.tenant_id, b.request_counts.model_dump()) for b in made)
    for page in listed:
        created = [batch["created_at"] for batch in page["data"]]
        assert created == sorted(created, reverse=True)
        if page["has_more"]:
            tenant_id, _, batch_id = base64.urlsafe_b64decode(page["last_id"] + "==").decode().partition("/")
            assert (tenant_id, batch_id) in {(b.tenant_id, b.id) for b in made}
    assert all(count <= 2 for count in reads.items["BatchesTable"])
    assert reads.count("BatchesTable") == 5


def test_admin_lists_one_tenants_batches_newest_first(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme")
    make_tenant("globex")
    acme = [stored_batch("acme", n, 1_790_000_000 + n) for n in (1, 3, 5)]
    stored_batch("globex", 2, 1_790_000_002)

    listed = pages(call_api, "/admin/batches", tenant_id="acme")

    assert [[b["id"] for b in page["data"]] for page in listed] == [[acme[2].id, acme[1].id], [acme[0].id]]
    assert listed[0]["last_id"] == acme[1].id and listed[0]["data"][0]["tenant_id"] == "acme"
    missing = call_api("GET", "/admin/batches", query={"tenant_id": "nobody"})
    assert (missing.status, missing.body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "query",
    [{"after": "not-a-cursor!"}, {"after": base64.urlsafe_b64encode(b"acme/x").decode()}, {"after": "batch_1"}],
)
def test_admin_batches_refuse_an_after_they_did_not_give(call_api: Api, query: dict[str, str]) -> None:
    if query["after"] == "batch_1":
        query = {**query, "tenant_id": "acme"}
        call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})
    refused = call_api("GET", "/admin/batches", query=query)
    assert (refused.status, refused.body["error"]["param"]) == (400, "after")


# -- GET /admin/usage ------------------------------------------------------------------------------


def test_admin_usage_sums_every_tenant_by_day_and_model(call_api: Api, make_tenant: Callable[..., IssuedKey]) -> None:
    make_tenant("acme", created=T0 - timedelta(days=30))
    make_tenant("globex", created=T0 - timedelta(days=30))
    make_tenant("idle", created=T0 - timedelta(days=30))
    bill("acme", 100, 20, at=T0)
    bill("globex", 7, 3, at=T0)
    bill("globex", 1_000_000, 1_000_000, at=T0 + timedelta(days=1))
    bill("acme", 5, 5, at=T0 + timedelta(days=5))  # after the range

    report = call_api("GET", "/admin/usage", query={"start": "2026-11-20", "end": "2026-11-21"})

    assert report.status == 200, report.body
    assert report.body["data"] == [
        {
            "date": "2026-11-20",
            "model": MODEL,
            "requests": 2,
            "prompt_tokens": 107,
            "completion_tokens": 23,
            "total_tokens": 130,
            "prompt_cost": "0.00000535",
            "completion_cost": "0.00000345",
            "cost": "0.0000088",
        },
        {
            "date": "2026-11-21",
            "model": MODEL,
            "requests": 1,
            "prompt_tokens": 1_000_000,
            "completion_tokens": 1_000_000,
            "total_tokens": 2_000_000,
            "prompt_cost": "0.05",
            "completion_cost": "0.15",
            "cost": "0.2",
        },
    ]
    assert report.body["totals"] == {
        "requests": 3,
        "prompt_tokens": 1_000_107,
        "completion_tokens": 1_000_023,
        "total_tokens": 2_000_130,
        "cost": "0.2000088",
    }
    assert report.body["tenants"] == [
        {"tenant_id": "acme", "requests": 1, "total_tokens": 120, "cost": "0.000008"},
        {"tenant_id": "globex", "requests": 2, "total_tokens": 2_000_010, "cost": "0.2000008"},
    ]
    assert (report.body["object"], report.body["start"], report.body["end"]) == ("usage", "2026-11-20", "2026-11-21")
    backwards = call_api("GET", "/admin/usage", query={"start": "2026-11-21", "end": "2026-11-20"})
    assert (backwards.status, backwards.body["error"]["param"]) == (400, "end")


# -- GET /admin/invoices/{month} -------------------------------------------------------------------


def test_invoices_say_which_are_final_and_the_stored_invoice_keeps_its_shape(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey]
) -> None:
    make_tenant("acme", created=T0 - timedelta(days=30))
    make_tenant("globex", created=T0 - timedelta(days=30))
    bill("acme", 1_000_000, 1_000_000, at=T0)
    bill("globex", 10, 10, at=T0)
    archived = Services(clock=lambda: datetime(2026, 12, 2, 2, 0, tzinfo=UTC))
    acme = archived.tenants.get("acme")
    invoice = archived.billing.invoice(acme, "2026-11")
    assert services.invoice_archive.put(invoice, "csv")

    listed = call_api("GET", "/admin/invoices/2026-11")

    assert listed.status == 200, listed.body
    assert {i["tenant_id"]: i["final"] for i in listed.body["data"]} == {"acme": True, "globex": False}
    assert Decimal(listed.body["amount_due"]) == Decimal("0.20")
    stored = boto3.client("s3").get_object(Bucket=services.settings.data_bucket, Key="invoices/2026-11/acme.json")
    assert "final" not in json.loads(stored["Body"].read())
