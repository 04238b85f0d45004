"""Nothing admitted is lost: a reservation whose job never got written, or whose request could not
be queued, gives its slot and tokens back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from stratus_core.keys import IssuedKey
from stratus_core.services import Services
from tests.helpers import ApiResponse, principal_of

Api = Callable[..., ApiResponse]
MODEL = "smollm2-135m-instruct"


def test_a_reservation_whose_job_was_never_recorded_is_released_by_the_sweep(
    services: Services,
    make_tenant: Callable[..., IssuedKey],
) -> None:
    # GIVEN an admitted request whose API function died before writing its job row
    make_tenant("acme", max_in_flight=1)
    services.admission.reserve("acme", "job_" + "a" * 24, MODEL, prompt_tokens_bound=100, max_tokens=100)
    assert services.tenants.get("acme").in_flight == 1
    assert services.sweeper.run().orphans_released == 0  # too recent: its job may still come

    # WHEN the sweep runs well after the grace period
    later = Services(clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    assert later.sweeper.run().orphans_released == 1

    # THEN the slot and the tokens are back, once
    assert services.tenants.get("acme").in_flight == 0
    assert later.sweeper.run().orphans_released == 0


def test_a_request_that_cannot_be_queued_fails_and_gives_its_slot_back(
    services: Services, call_api: Api, make_tenant: Callable[..., IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratus_core.adapters.sqs import SqsQueue

    caller = principal_of(make_tenant("acme", max_in_flight=1))

    def broken(self: SqsQueue, message: object) -> None:
        raise ConnectionError("SQS unreachable")

    monkeypatch.setattr(SqsQueue, "send", broken)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    response = call_api("POST", "/v1/chat/completions", chat, principal=caller, headers={"prefer": "respond-async"})

    assert response.status == 500
    assert response.body["error"]["message"] == "internal error"
    assert services.tenants.get("acme").in_flight == 0
