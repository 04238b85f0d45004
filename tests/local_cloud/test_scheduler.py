"""The scheduler on the local cloud (`Scaling=Scheduler`, the template's default), watched on one machine.

Batch lines submitted while the endpoint is at zero are held: they do not start it while their
slack lasts, and they run once an interactive request has woken it. With nothing else to run for
them, held lines start the endpoint themselves when their slack runs out. After the last work the
endpoint goes to zero `IdleScaleInMinutes` later.

The slack is made short so that the test sees it run out: `DeadlineMarginMinutes` is the batch
window (24 h) less 40 s, so a line submitted now must be finished 40 s from now, and the scheduler
starts the endpoint when that, less the expected cold start (6 s here) and the lines' own time,
arrives. Every wait below is for an event in the logs (bounded, so that a bug fails instead of
hanging), never a sleep whose length decides the outcome.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("torch")

import openai

from tests.local_cloud.conftest import MODEL, Cloud, launch, tiny_artifact

IDLE_SECONDS = 4
WINDOW_LEFT_SECONDS = 40


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    margin_minutes = (24 * 3600 - WINDOW_LEFT_SECONDS) / 60
    extra = ["--idle-seconds", str(IDLE_SECONDS), "--scheduler-seconds", "1"]
    extra += ["--parameter", f"DeadlineMarginMinutes={margin_minutes}"]
    with launch(tiny_artifact(tmp_path_factory), tmp_path_factory, engine="echo", extra=extra) as running:
        yield running


def decisions(cloud: Cloud) -> list[dict[str, Any]]:
    """The scheduler's decisions, in order, from its log lines."""
    found = []
    for line in cloud.log.read_text().splitlines():
        if line.startswith("{") and '"message":"scheduled"' in line.replace(" ", ""):
            found.append(json.loads(line))
    return found


def wait_for(check: Callable[[], bool], what: str, cloud: Cloud, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s\n" + cloud.log.read_text()[-4000:]
        time.sleep(0.25)


def batch_of(client: openai.OpenAI, lines: int, tag: str) -> str:
    body = "".join(
        json.dumps(
            {
                "custom_id": f"{tag}{i}",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"model": MODEL, "prompt": f"{tag} {i}", "max_tokens": 3},
            }
        )
        + "\n"
        for i in range(lines)
    )
    uploaded = client.files.create(file=(f"{tag}.jsonl", body.encode()), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h").id


def test_held_batch_lines_wait_for_a_warm_endpoint_or_their_deadline_and_the_endpoint_goes_to_zero(
    cloud: Cloud,
) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
    key = cloud.call("POST", "/admin/tenants/acme/keys", admin, {"scopes": ["inference", "batch", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=10, timeout=120)
    cold_starts = lambda: cloud.log.read_text().count("scaling 0 -> 1: starting the model server")  # noqa: E731

    # GIVEN two batch lines held while the endpoint is at zero, with slack left
    first = batch_of(client, 2, "a")
    wait_for(
        lambda: sum(1 for d in decisions(cloud) if "deferrable 2 held, slack" in d["reason"]) >= 3,
        "three scheduler runs that hold the two lines",
        cloud,
    )
    held = [d for d in decisions(cloud) if "deferrable 2 held, slack" in d["reason"]]
    assert all(d["desired"] == 0 and d["released"] == 0 for d in held)
    assert cold_starts() == 0 and client.batches.retrieve(first).request_counts.completed == 0  # type: ignore[union-attr]

    # WHEN an interactive request wakes the endpoint
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "wake up"}], max_tokens=3
    )

    # THEN it is answered, and the held lines run on the instance that is up anyway
    assert completion.object == "chat.completion" and completion.service_tier == "default"
    wait_for(lambda: client.batches.retrieve(first).status == "completed", "the first batch", cloud)
    assert cold_starts() == 1
    assert any("deferrable 2 up anyway" in d["reason"] and d["released"] == 2 for d in decisions(cloud))

    # AND the endpoint goes to zero IdleScaleInMinutes after the last work
    wait_for(lambda: "desired count 0: scaling 1 -> 0" in cloud.log.read_text(), "the scale-in to zero", cloud)
    (scale_in,) = [d for d in decisions(cloud) if "scale in to zero" in d["reason"]][:1]
    assert scale_in["desired"] == 0 and f"no work for {IDLE_SECONDS} s" in scale_in["reason"]

    # GIVEN lines with nothing else to run for them: they start the endpoint when their slack runs out
    runs_before = len(decisions(cloud))
    second = batch_of(client, 2, "b")
    wait_for(lambda: client.batches.retrieve(second).status == "completed", "the second batch", cloud)
    later = decisions(cloud)[runs_before:]
    waking = next(i for i, d in enumerate(later) if d["desired"] == 1)
    assert "deferrable 2 deadline" in later[waking]["reason"]
    assert any("deferrable 2 held, slack" in d["reason"] for d in later[:waking])  # it was held first
    assert cold_starts() == 2

    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert usage["requests"] == 5

    # AND the operators' picture of the endpoint (`GET /admin/endpoint`, 24 h) shows both cold starts,
    # the decisions that made them and the instance-hours, against a day of one instance always on
    def finished_starts() -> list[dict[str, Any]]:
        report = cloud.call("GET", "/admin/endpoint", admin)
        return [start for start in report["cold_starts"] if start["in_service_at"] is not None]

    wait_for(lambda: len(finished_starts()) == 2, "the two cold starts in the endpoint's history", cloud)
    report = cloud.call("GET", "/admin/endpoint", admin)
    assert (report["object"], report["hours"], report["always_on_instance_hours"]) == ("endpoint", 24, 24.0)
    assert all(start["seconds"] > 0 for start in report["cold_starts"]) and 0 < report["instance_hours"] < 1
    reasons = [run["reason"] for run in report["runs"]]
    assert any("deferrable 2 deadline" in reason for reason in reasons)
    assert any("scale in to zero" in reason for reason in reasons)
    assert [run["at"] for run in report["runs"]] == sorted(run["at"] for run in report["runs"])
