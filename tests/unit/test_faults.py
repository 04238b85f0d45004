"""The local cloud's fault layer: a spec per run, faults that fire as configured, a report."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from stratus.localcloud.faults import FaultLayer, FaultRates


def test_a_spec_names_each_fault_and_bad_specs_are_refused() -> None:
    rates = FaultRates.parse("throttle=0.1, lost=0.05,delay_seconds=3,poison=5")
    assert (rates.throttle, rates.lost, rates.delay_seconds, rates.poison) == (0.1, 0.05, 3.0, 5)
    assert rates.duplicate == 0
    assert rates.describe() == "throttle=0.1, lost=0.05"
    for bad, message in [
        ("lots=0.1", "unknown fault"),
        ("lost=2", "between 0 and 1"),
        ("delay_seconds=-1", "negative"),
    ]:
        with pytest.raises(ValueError, match=message):
            FaultRates.parse(bad)


def test_notifications_are_lost_duplicated_or_delayed_as_configured() -> None:
    published: list[str] = []

    FaultLayer(FaultRates(lost=1.0)).publish(lambda: published.append("lost"))
    FaultLayer(FaultRates(duplicate=1.0)).publish(lambda: published.append("twice"))
    FaultLayer(FaultRates()).publish(lambda: published.append("once"))
    assert published == ["twice", "twice", "once"]

    arrived = threading.Event()
    delayed = FaultLayer(FaultRates(delay=1.0, delay_seconds=0.6))
    delayed.publish(arrived.set)
    assert not arrived.is_set()  # not published on the spot
    assert arrived.wait(timeout=10)  # but published later
    assert delayed.injected == {"delay": 1}


def test_a_crashing_function_has_done_its_work_before_it_raises(tmp_path: Path) -> None:
    done: list[dict[str, Any]] = []
    layer = FaultLayer(FaultRates(results_crash=1.0), report=tmp_path / "faults.json")
    crashing = layer.crashing(lambda event, context: done.append(event), "results_crash")

    with pytest.raises(RuntimeError, match="after the writes"):
        crashing({"Records": []}, None)

    assert done == [{"Records": []}]
    layer.write_report()
    report = json.loads((tmp_path / "faults.json").read_text())
    assert report["injected"] == {"results_crash": 1}
    assert report["rates"]["results_crash"] == 1.0


def test_the_same_seed_draws_the_same_faults() -> None:
    def draws(seed: int) -> list[bool]:
        layer = FaultLayer(FaultRates(throttle=0.3), seed=seed)
        return [layer.fires("throttle") for _ in range(50)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert 0 < sum(draws(7)) < 50


def test_every_configured_fault_fires_at_its_first_opportunity() -> None:
    # GIVEN a fault so rare that a small run would almost never draw it, and one switched off
    layer = FaultLayer(FaultRates(results_crash=1e-9, lost=0.0), seed=3)

    # WHEN each is drawn for many times
    crashes = [layer.fires("results_crash") for _ in range(100)]
    losses = [layer.fires("lost") for _ in range(100)]

    # THEN the configured one fired exactly at its first opportunity, the other never
    assert crashes[0] is True and sum(crashes) == 1
    assert not any(losses)
    assert layer.injected == {"results_crash": 1}
