"""Continuous batching: requests join a running batch and leave it as soon as they finish."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpu_jobs.batcher import ContinuousBatcher  # noqa: E402
from gpu_jobs.engine.base import GenerationRequest, GenerationResult  # noqa: E402
from gpu_jobs.engine.transformers_engine import TransformersEngine  # noqa: E402
from gpu_jobs.loader import load_engine  # noqa: E402
from gpu_jobs.settings import ServerSettings  # noqa: E402

LONG = GenerationRequest(prompt="the quick brown fox jumps over", max_tokens=40, temperature=0)
SHORT = GenerationRequest(prompt="one two", max_tokens=2, temperature=0)
SAMPLED = GenerationRequest(prompt="Stratus serves", max_tokens=12, temperature=0.9, top_p=0.9, seed=7)


@pytest.fixture(scope="module")
def engine(tiny_artifact: Path) -> TransformersEngine:
    return load_engine(tiny_artifact, ServerSettings.from_environment({"STRATUS_DTYPE": "float32"}))


def alone(engine: TransformersEngine, request: GenerationRequest) -> GenerationResult:
    (result,) = engine.generate([request])
    return result


def test_a_request_that_joins_a_running_batch_gets_what_it_would_get_alone(engine: TransformersEngine) -> None:
    batch = engine.admit([LONG], tickets=["long"])
    for _ in range(5):
        engine.step(batch)
    batch = batch.merge(engine.admit([SHORT, SAMPLED], tickets=["short", "sampled"]))
    assert len(batch.rows) == 3
    finished = {}
    while batch.rows:
        engine.step(batch)
        finished.update({row.ticket: row.result for row in batch.take_finished()})

    for ticket, request in (("long", LONG), ("short", SHORT), ("sampled", SAMPLED)):
        expected = alone(engine, request)
        assert finished[ticket].token_ids == expected.token_ids, ticket
        assert finished[ticket].completion_tokens == expected.completion_tokens
    assert finished["long"].completion_tokens == 40 and finished["long"].finish_reason == "length"


def test_a_finished_row_leaves_the_batch_and_its_cache_rows_go(engine: TransformersEngine) -> None:
    batch = engine.admit([LONG, SHORT], tickets=["long", "short"])
    engine.step(batch)  # the short one has its 2 tokens now
    assert [row.ticket for row in batch.take_finished()] == ["short"]
    assert [row.ticket for row in batch.rows] == ["long"]
    assert batch.cache.layers[0].keys.shape[0] == 1 and batch.mask is not None and bool(batch.mask.all())


def test_the_batcher_returns_a_short_answer_while_a_long_one_is_still_decoding(engine: TransformersEngine) -> None:
    batcher = ContinuousBatcher(engine, max_batch_size=4, wait_ms=50)
    try:
        long = batcher.submit(LONG)
        short = batcher.submit(SHORT)
        seen: list[bool] = []
        short.add_done_callback(lambda _: seen.append(long.done()))  # runs when the short one is resolved
        assert short.result(timeout=60).completion_tokens == 2
        assert long.result(timeout=60).completion_tokens == 40
        assert seen == [False]
    finally:
        batcher.close()


def test_a_pack_larger_than_the_batch_fills_slots_as_they_free(engine: TransformersEngine) -> None:
    batcher = ContinuousBatcher(engine, max_batch_size=3, wait_ms=10)
    requests = [
        GenerationRequest(prompt=f"one two three {'four ' * (i % 4)}", max_tokens=1 + (i * 7) % 9, temperature=0)
        for i in range(10)
    ]
    try:
        futures: list[Future[GenerationResult]] = [batcher.submit(request) for request in requests]
        results = [future.result(timeout=120) for future in futures]
    finally:
        batcher.close()
    for request, result in zip(requests, results, strict=True):
        assert result.token_ids == alone(engine, request).token_ids
    assert batcher.steps_run < sum(r.max_tokens for r in requests)  # requests shared decode steps
