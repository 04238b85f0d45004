"""Faults for the local cloud, chosen per run (`stratus local up --faults …`).

A layer around the emulated parts, never inside the functions' code: the async endpoint throttles
`InvokeEndpointAsync`, fails packs (SageMaker's error notification and failure file), and its
notifications are lost, duplicated, or delayed (so they arrive out of order); the Lambda-like
pollers crash a function after its handler has done its writes but before the messages are
acknowledged (so SQS delivers them again); poison messages are put on the requests queue; the
functions' DynamoDB calls are throttled, their transactions cancelled by conflicts, and their
writes answered 500 after they landed (`dynamo_faults.py`).
Each configured fault fires at its first opportunity, then with its own probability from one
seeded generator: a run of any size shows every fault it was given (a rate drawn a handful of times
may otherwise never fire, and a check that every fault fired would fail by chance). What fired is
counted and written as JSON (`--fault-report`) when the cloud stops.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from stratus.localcloud.dynamo_faults import DynamoFaults

logger = logging.getLogger("local.faults")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class FaultRates:
    """Probabilities (0–1) of each fault, and the counts/durations of the others."""

    throttle: float = 0.0  # per InvokeEndpointAsync call: ThrottlingException
    endpoint_error: float = 0.0  # per pack: the endpoint fails it (error notification + failure file)
    lost: float = 0.0  # per notification: never published
    duplicate: float = 0.0  # per notification: published twice
    delay: float = 0.0  # per notification: published up to `delay_seconds` later (reordered)
    dispatcher_crash: float = 0.0  # per dispatcher invocation: raises after its writes
    results_crash: float = 0.0  # per results invocation: raises after its writes
    poison: int = 0  # malformed messages put on the requests queue at start
    delay_seconds: float = 10.0
    # the functions' DynamoDB calls (dynamo_faults.py):
    ddb_throttle: float = 0.0  # per call: ProvisionedThroughputExceeded / Throttling, nothing done
    ddb_conflict: float = 0.0  # per TransactWriteItems: cancelled for a TransactionConflict
    ddb_landed_error: float = 0.0  # per write: applied, then answered 500 InternalServerError

    PROBABILITIES = (
        *("throttle", "endpoint_error", "lost", "duplicate", "delay", "dispatcher_crash", "results_crash"),
        *("ddb_throttle", "ddb_conflict", "ddb_landed_error"),
    )
    DYNAMODB = ("ddb_throttle", "ddb_conflict", "ddb_landed_error")

    @classmethod
    def parse(cls, spec: str) -> FaultRates:
        """`throttle=0.1,lost=0.05,poison=5` (names are the fields; unknown names are refused)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in known or not raw:
                raise ValueError(f"unknown fault {name!r}: use name=value with one of {', '.join(known)}")
            value: float = int(raw) if name == "poison" else float(raw)
            if name in cls.PROBABILITIES and not 0 <= value <= 1:
                raise ValueError(f"{name}={raw}: a probability is between 0 and 1")
            if value < 0:
                raise ValueError(f"{name}={raw} is negative")
            values[name] = value
        return cls(**values)

    def describe(self) -> str:
        return (
            ", ".join(f"{name}={getattr(self, name)}" for name in self.PROBABILITIES if getattr(self, name)) or "none"
        )


class FaultLayer:
    def __init__(self, rates: FaultRates, seed: int = 0, report: Path | None = None) -> None:
        self.rates = rates
        self._rng = random.Random(seed)  # noqa: S311 (reproducible draws, not secrets)
        self._lock = threading.Lock()
        self._report = report
        self.injected: dict[str, int] = {}
        self._timers: list[threading.Timer] = []
        self.dynamodb = DynamoFaults(self.fires, self._pick)

    def _pick(self, options: list[str]) -> str:
        with self._lock:
            return self._rng.choice(options)

    def fires(self, fault: str) -> bool:
        """Draw for `fault` (a probability field); count it when it fires. A fault with a rate above
        zero always fires the first time it is drawn for."""
        with self._lock:
            rate = getattr(self.rates, fault)
            first = rate > 0 and fault not in self.injected
            if self._rng.random() >= rate and not first:
                return False
            self.injected[fault] = self.injected.get(fault, 0) + 1
        logger.info("fault injected: %s", fault)
        return True

    def _count(self, fault: str, times: int = 1) -> None:
        with self._lock:
            self.injected[fault] = self.injected.get(fault, 0) + times

    def crashing(self, handler: Handler, fault: str) -> Handler:
        """The handler, except that now and then it raises after it has done its work (and its
        writes), before the poller can delete the messages."""

        def run(event: dict[str, Any], context: Any) -> Any:
            response = handler(event, context)
            if self.fires(fault):
                raise RuntimeError(f"injected fault {fault}: crashed after the writes, before the ack")
            return response

        return run

    def publish(self, publish: Callable[[], None]) -> None:
        """SNS with faults: the notification may be lost, duplicated and/or delayed."""
        if self.fires("lost"):
            return
        for _ in range(2 if self.fires("duplicate") else 1):
            if self.fires("delay"):
                with self._lock:
                    seconds = self._rng.uniform(0.5, self.rates.delay_seconds)
                timer = threading.Timer(seconds, publish)
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                publish()

    def poison(self, sqs: Any, queue_url: str) -> None:
        for i in range(self.rates.poison):
            sqs.send_message(QueueUrl=queue_url, MessageBody=f"poison message #{i}: not a request")
        if self.rates.poison:
            self._count("poison", self.rates.poison)

    def write_report(self) -> None:
        if self._report is None:
            return
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            report = {"rates": asdict(self.rates), "injected": dict(self.injected)}
        self._report.parent.mkdir(parents=True, exist_ok=True)
        self._report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
