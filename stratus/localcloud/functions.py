"""The template's Lambda functions, imported as Lambda would import them, with their event sources."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class SqsSource:
    function: str
    queue: str  # logical id
    batch_size: int
    batching_window: float


@dataclass(frozen=True)
class Schedule:
    function: str
    expression: str


def handler(template: Mapping[str, Any], logical_id: str) -> Handler:
    """`Handler: dispatcher.app.lambda_handler` → that function (functions/ is on sys.path).

    The module is imported with the function's own `POWERTOOLS_SERVICE_NAME`, as Lambda would run
    it: Powertools' Logger keeps its context keys on the standard logger of that name, so functions
    sharing one name in this one process shared them too, and a sweeper's log line carried the
    API invocation's function name and correlation id. Their metrics get the `service` dimension
    they have on AWS (`stratus-scheduler`, …) as well.

    A module imported before under another name (by `reset_services`, a test, or any import of
    `api.app`) is imported again: its logger was built with the wrong name, and every handler
    decorated with it logs under that name (all of them `stratus`, each line naming whichever
    function last set the shared context). `reset_services` no longer imports anything."""
    properties = template["Resources"][logical_id]["Properties"]
    module_name, _, attribute = properties["Handler"].rpartition(".")
    service = properties.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
    previous = os.environ.get("POWERTOOLS_SERVICE_NAME")
    if service:
        os.environ["POWERTOOLS_SERVICE_NAME"] = service
    try:
        module = importlib.import_module(module_name)  # the imported one, when it is
        if service and getattr(getattr(module, "logger", None), "service", service) != service:
            module = importlib.reload(module)
        return getattr(module, attribute)  # type: ignore[no-any-return]
    finally:
        if previous is None:
            os.environ.pop("POWERTOOLS_SERVICE_NAME", None)
        else:
            os.environ["POWERTOOLS_SERVICE_NAME"] = previous


def reset_services(template: Mapping[str, Any]) -> None:
    """Make every function's `services` (built per process by its `app.py`) and every boto3 client
    be built again from the current environment: the local cloud and the tests change it."""
    from stratus_core.adapters import aws

    for resource in template["Resources"].values():
        handler_path = resource.get("Properties", {}).get("Handler") if resource["Type"].endswith("Function") else None
        if handler_path:  # a module not imported yet has no services to reset (`handler` imports it)
            module = sys.modules.get(handler_path.rpartition(".")[0])
            services = getattr(module, "services", None)
            if services is not None:
                services.reset()
    aws.reset_clients()


def sqs_sources(template: Mapping[str, Any]) -> list[SqsSource]:
    sources = []
    for logical_id, resource in template["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                properties = event["Properties"]
                sources.append(
                    SqsSource(
                        logical_id,
                        queue,
                        int(properties.get("BatchSize", 10)),
                        float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    )
                )
    return sources


def schedules(template: Mapping[str, Any]) -> list[Schedule]:
    found = []
    for logical_id, resource in template["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "Schedule":
                found.append(Schedule(logical_id, event["Properties"]["Schedule"]))
    return found
