"""vLLM's server, with Stratus's pack handler as its SageMaker `/invocations`, answers packs as
SageMaker's container contract and our pack contract say: one result per request, each on its own."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.localcloud.endpoint import ModelProcess
from stratus_core.contract import PackResult

from .conftest import chat, completion, pack, post, serve


def ping(server: ModelProcess) -> int:
    try:
        with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0  # nothing listens any more


def test_ping_is_200_once_loaded(server: ModelProcess) -> None:
    assert ping(server) == 200


def test_a_pack_of_several_requests_gets_one_result_each_with_the_engines_counts(
    server: ModelProcess, tiny_artifact: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    status, body = post(server, pack(chat("hello there"), completion("one two three"), completion("x " * 600)))

    assert status == 200
    first, second, third = PackResult.model_validate(body).results
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello there"}], tokenize=False, add_generation_prompt=True
    )
    assert first.usage is not None and first.choices is not None
    assert first.usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert second.usage is not None and second.choices is not None
    assert second.usage.prompt_tokens == len(tokenizer("one two three").input_ids)
    for item, max_tokens in ((first, 8), (second, 6)):
        assert item.usage is not None and item.choices is not None
        assert item.usage.total_tokens == item.usage.prompt_tokens + item.usage.completion_tokens
        assert item.usage.completion_tokens == len(tokenizer(item.choices[0].text).input_ids) or (
            item.choices[0].finish_reason == "stop"
        )
        if item.choices[0].finish_reason == "length":
            assert item.usage.completion_tokens == max_tokens
    assert third.error is not None and third.error.code == "context_length_exceeded"  # the artifact's 1,024
    assert third.usage is None


def test_one_tenants_unservable_requests_fail_alone_and_the_others_are_answered(server: ModelProcess) -> None:
    """Issue 24: a history whose tool call's arguments are not JSON failed a whole pack (500, every tenant)."""
    broken_history = {
        "kind": "chat",
        "tenant_id": "mallory",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{not json"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "params": {
            "max_tokens": 4,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto",
        },
    }
    bad_schema = chat("x", response_format={"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}})
    unknown_model = {**chat("hi"), "model": "no-such-model"}
    too_long = completion("x", max_tokens=5000)
    fine = [chat("hello", max_tokens=5), completion("one two", max_tokens=5)]

    status, body = post(server, pack(broken_history, fine[0], bad_schema, unknown_model, too_long, fine[1]))

    assert status == 200
    results = PackResult.model_validate(body).results
    codes = [r.error.code if r.error else None for r in results]
    assert codes == [
        "invalid_request",
        None,
        "invalid_request",
        "model_not_found",
        "context_length_exceeded",
        None,
    ]
    for answered in (results[1], results[5]):
        assert answered.usage is not None and answered.usage.completion_tokens > 0
    assert all(r.usage is None for r in results if r.error)  # nothing is billed for a refused request


def test_same_seed_gives_the_same_text(server: ModelProcess) -> None:
    sampled = {"temperature": 1.0, "max_tokens": 12}
    _, body = post(
        server,
        pack(completion("the quick", seed=7, **sampled), completion("the quick", seed=7, **sampled)),
    )
    texts = [r["choices"][0]["text"] for r in body["results"]]
    assert texts[0] == texts[1]
    _, again = post(server, pack(completion("the quick", seed=7, **sampled)))
    assert again["results"][0]["choices"][0]["text"] == texts[0]


def test_a_stop_sequence_stops(server: ModelProcess) -> None:
    _, free = post(server, pack(completion("one two", max_tokens=12)))
    text = free["results"][0]["choices"][0]["text"]
    stop = text.strip()[len(text.strip()) // 2 :][:3]
    assert stop, "the model generated nothing to stop on"

    _, stopped = post(server, pack(completion("one two", max_tokens=12, stop=[stop])))

    choice = stopped["results"][0]["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert stop not in choice["text"]
    assert text.startswith(choice["text"])


def test_a_bad_pack_is_400_not_500(server: ModelProcess) -> None:
    status, body = post(server, b'{"version": 2}')
    assert status == 400
    assert "InferencePack" in body["error"]
    status, body = post(server, pack(completion("x"), version=3))
    assert status == 400 and body["details"][0]["loc"] == ["version"]


def test_a_version_1_pack_queued_before_a_deploy_is_still_served(server: ModelProcess) -> None:
    status, old = post(server, pack(completion("one two three", seed=1, temperature=1.0), version=1))
    _, new = post(server, pack(completion("one two three", seed=1, temperature=1.0)))

    assert status == 200 and old["version"] == 2
    assert old["results"][0]["choices"] == new["results"][0]["choices"]


def test_concurrent_packs_are_all_answered(server: ModelProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(server, pack(completion(f"number {i}"), chat(f"n {i}"))), range(8)))
    assert all(status == 200 for status, _ in answers)
    assert all(r["usage"]["completion_tokens"] > 0 for _, body in answers for r in body["results"])


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def doomed_server(tiny_artifact: Path) -> Iterator[ModelProcess]:
    yield from serve(tiny_artifact, "vllm")


def test_when_the_engine_dies_ping_fails_and_the_packs_requests_fail_retryably_unbilled(
    doomed_server: ModelProcess,
) -> None:
    assert ping(doomed_server) == 200 and doomed_server.pid is not None
    engine_cores = children(doomed_server.pid)
    assert engine_cores, "vLLM's engine core runs in a child process"

    for pid in engine_cores:
        os.kill(pid, signal.SIGKILL)
    try:
        status, body = post(doomed_server, pack(chat("hello", max_tokens=4), completion("one", max_tokens=4)))
    except (urllib.error.URLError, ConnectionError):
        status, body = 0, {}
    if status == 200:  # answered while the server still stood: each request failed, none billed
        results = PackResult.model_validate(body).results
        assert [r.error.code if r.error else None for r in results] == ["inference_failed"] * 2
    else:  # the server had gone: SageMaker fails the whole invocation, and the results function fails the pack
        assert status == 0 or status >= 500

    deadline = time.monotonic() + 30
    while ping(doomed_server) == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ping(doomed_server) != 200  # 503 from vLLM's health check, then nothing: SageMaker replaces it
