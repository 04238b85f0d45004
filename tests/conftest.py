"""Shared fixtures: dummy AWS credentials, moto with the template's resources, sample events."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from stratus.localcloud.functions import reset_services
from stratus.localcloud.resources import Created, create_all
from stratus.template import function_environment, load_template
from stratus_core.services import Services

# Powertools reads these when a handler module is imported, which is at collection time.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "StratusTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "stratus-tests")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

pytest_plugins = ["tests.iam.recorder"]  # every run records the functions' AWS calls (tests/iam)

EVENTS = Path(__file__).resolve().parent.parent / "events"
REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a fixed region: no test can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(autouse=True)
def _instant_botocore_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard retry mode still retries every throttle and 5xx the fault layers inject,
    as many times as it would on AWS; only its sleep between attempts is zero. No outcome depends
    on how long it sleeps, and the in-process fault scenario spent 115 of its 260 s asleep there."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Iterator[Created]:
    """moto in process with every resource template.yaml declares (tables, bucket, queues, topics)."""
    template = load_template()
    with mock_aws():
        reset_services(template)
        resources = create_all("test")
        for name, value in function_environment(template, resources.refs).items():
            monkeypatch.setenv(name, value)
        yield resources
        reset_services(template)


@pytest.fixture
def cloud(created: Created) -> dict[str, str]:
    """The functions' environment (from the template's Globals) on the moto of `created`."""
    return function_environment(load_template(), created.refs)


@pytest.fixture
def services(created: Created) -> Services:
    """The services a function builds, over the moto of `created` (for setting up and checking)."""
    return Services()


@pytest.fixture
def linearizable_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's request handling, as DynamoDB serialises writes to one item.

    moto applies a transaction item by item and restores a deep copy of the table when one
    fails, so two threads inside it at once can undo each other's writes. One lock around
    each whole request gives the tests a linearizable store; our code still races freely
    between its calls, which is what the concurrency tests exercise.
    """
    lock = threading.Lock()
    original = BotocoreStubber.__call__

    def serialised(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", serialised)


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """A fresh copy of `events/<name>.json`, the real shapes `sam local invoke` also uses."""

    def load(name: str) -> dict[str, Any]:
        with (EVENTS / f"{name}.json").open(encoding="utf-8") as handle:
            return copy.deepcopy(json.load(handle))

    return load


@pytest.fixture
def service_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the handlers' Powertools loggers emit (they do not propagate to the root logger)."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("stratus") and "." not in name
    ]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)
