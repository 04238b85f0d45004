"""The inference server answers packs as SageMaker's container contract and our pack contract say."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gpu_jobs.artifact import ArtifactError, verify
from gpu_jobs.server import ModelHolder, create_app
from stratus_core.contract import InferencePack, PackResult

from .conftest import RunningServer


def torch_sees_a_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def post(server: RunningServer, payload: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{server.url}/invocations", data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pack(*requests: dict[str, Any], version: int = 2) -> bytes:
    body = {
        "version": version,
        "pack_id": "pack_test",
        "model": "tiny",
        "requests": [{"job_id": f"job_{i}", "tenant_id": "acme", "model": "tiny", **r} for i, r in enumerate(requests)],
    }
    return json.dumps(body).encode()


def chat(content: str, **params: Any) -> dict[str, Any]:
    return {
        "kind": "chat",
        "messages": [{"role": "user", "content": content}],
        "params": {"max_tokens": 8, "temperature": 0, **params},
    }


def completion(prompt: str, **params: Any) -> dict[str, Any]:
    return {"kind": "completion", "prompt": prompt, "params": {"max_tokens": 6, "temperature": 0, **params}}


def test_ping_is_200_once_loaded(server: RunningServer) -> None:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["model"] == "tiny"


def test_a_pack_of_several_requests_gets_one_result_each_with_tokenizer_counts(
    server: RunningServer, tiny_artifact: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    status, body = post(server, pack(chat("hello there"), completion("one two three"), completion("x " * 600)))

    assert status == 200
    result = PackResult.model_validate(body)
    assert [r.job_id for r in result.results] == ["job_0", "job_1", "job_2"]
    first, second, third = result.results
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello there"}], tokenize=False, add_generation_prompt=True
    )
    assert first.usage is not None and first.choices is not None
    assert first.usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert second.usage is not None and second.choices is not None
    assert second.usage.prompt_tokens == len(tokenizer("one two three", add_special_tokens=False).input_ids)
    for item in (first, second):
        assert item.usage is not None and item.choices is not None
        assert item.usage.total_tokens == item.usage.prompt_tokens + item.usage.completion_tokens
        if item.choices[0].finish_reason == "length":
            assert item.usage.completion_tokens == (8 if item is first else 6)
    assert third.error is not None and third.error.code == "context_length_exceeded"


def test_same_seed_gives_the_same_text(server: RunningServer) -> None:
    sampled = {"temperature": 1.0, "max_tokens": 12}
    _, body = post(
        server,
        pack(
            completion("the quick", seed=7, **sampled),
            completion("the quick", seed=7, **sampled),
            completion("the quick", seed=8, **sampled),
        ),
    )
    texts = [r["choices"][0]["text"] for r in body["results"]]
    assert texts[0] == texts[1]
    _, again = post(server, pack(completion("the quick", seed=7, **sampled)))
    assert again["results"][0]["choices"][0]["text"] == texts[0]


def test_a_stop_sequence_stops(server: RunningServer) -> None:
    _, free = post(server, pack(completion("one two", max_tokens=12)))
    text = free["results"][0]["choices"][0]["text"]
    stop = text.strip()[len(text.strip()) // 2 :][:3]
    assert stop, "the model generated nothing to stop on"

    _, stopped = post(server, pack(completion("one two", max_tokens=12, stop=[stop])))

    choice = stopped["results"][0]["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert stop not in choice["text"]
    assert text.startswith(choice["text"])


def test_a_bad_pack_is_400_not_500(server: RunningServer) -> None:
    status, body = post(server, b'{"version": 2}')
    assert status == 400
    assert "InferencePack" in body["error"]
    status, body = post(server, pack(completion("x"), version=3))
    assert status == 400 and body["details"][0]["loc"] == ["version"]


def test_a_version_1_pack_queued_before_a_deploy_is_still_served(server: RunningServer) -> None:
    status, old = post(server, pack(completion("one two three", seed=1, temperature=1.0), version=1))
    _, new = post(server, pack(completion("one two three", seed=1, temperature=1.0)))

    assert status == 200 and old["version"] == 2
    assert old["results"][0]["choices"] == new["results"][0]["choices"]


def test_a_version_2_pack_carries_options_per_request(server: RunningServer) -> None:
    options = {"n": 2, "seed": 4, "temperature": 1.0, "logprobs": True, "top_logprobs": 3}
    json_object = {"response_format": {"type": "json_object"}, "max_tokens": 40}
    status, body = post(server, pack(chat("hello", **options), chat("hello", **json_object), completion("hello")))

    assert status == 200
    sampled, structured, plain = PackResult.model_validate(body).results
    assert sampled.choices is not None and sampled.usage is not None
    assert [choice.index for choice in sampled.choices] == [0, 1]
    assert sampled.usage.completion_tokens == sum(len(choice.logprobs or []) for choice in sampled.choices)
    assert all(len(entry.top_logprobs) == 3 for choice in sampled.choices for entry in choice.logprobs or [])
    assert structured.choices is not None
    if structured.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(structured.choices[0].text), dict)
    assert plain.choices is not None and plain.choices[0].logprobs is None


def test_concurrent_packs_are_generated_in_shared_batches(server: RunningServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = server.holder.batcher.batches_run  # type: ignore[union-attr]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(server, pack(completion(f"number {i}"))), range(8)))
    assert all(status == 200 for status, _ in answers)
    assert server.holder.batcher.batches_run - before < 8  # type: ignore[union-attr]


def test_a_corrupted_shard_is_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    shard = sorted(broken.glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))

    with pytest.raises(ArtifactError, match=f"shard {shard.name}: SHA-256"):
        verify(broken)


def ping(holder: ModelHolder) -> tuple[int, dict[str, Any]]:
    """`GET /ping` through the ASGI app, without a socket."""
    import asyncio

    app = create_app(holder)
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/ping", "headers": [], "query_string": b""}
        await app(scope, receive, send)

    asyncio.run(call())
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.skipif(torch_sees_a_gpu(), reason="the instance this checks for has GPUs that CUDA cannot use")
def test_ping_fails_when_the_instance_should_have_gpus_that_cuda_cannot_see(tiny_artifact: Path) -> None:
    """SageMaker's default driver on ml.g5 async endpoints is 470 (CUDA 11.4): a CUDA 12 image sees no
    GPU there. The model must not then load on the CPUs behind a healthy `/ping`."""
    from gpu_jobs.serve import build_holder
    from gpu_jobs.settings import ServerSettings

    settings = ServerSettings.from_environment({"SM_MODEL_DIR": str(tiny_artifact), "SM_NUM_GPUS": "1"})
    holder = build_holder(settings)
    holder.start()

    assert not holder.wait(60)
    status, body = ping(holder)
    assert (status, body["status"]) == (503, "failed")
    assert body["error"].startswith("GpusMissing: SM_NUM_GPUS=1 but CUDA sees 0 GPU(s)")
    assert "InferenceAmiVersion" in body["error"]


def test_without_sm_num_gpus_the_server_uses_the_gpus_cuda_sees() -> None:
    """SageMaker does not set SM_NUM_GPUS for a container of one's own."""
    from gpu_jobs.settings import ServerSettings, visible_gpus

    unset = ServerSettings.from_environment({})
    assert (unset.num_gpus, unset.gpus_expected) == (visible_gpus(), False)
    assert ServerSettings.from_environment({"SM_NUM_GPUS": "0"}).gpus_expected is False
    four = ServerSettings.from_environment({"SM_NUM_GPUS": "4"})
    assert (four.num_gpus, four.gpus_expected) == (4, True)


def test_ping_is_503_until_the_model_loads() -> None:
    holder = ModelHolder(lambda: (_ for _ in ()).throw(RuntimeError("no model")))
    status, body = ping(holder)
    assert (status, body["status"]) == (503, "loading")
    InferencePack  # the contract the server speaks  # noqa: B018


def test_an_int8_artifact_is_smaller_and_serves(tiny_source: Path, tmp_path: Path) -> None:
    from gpu_jobs.build import BuildRequest, build
    from gpu_jobs.engine.base import GenerationRequest
    from gpu_jobs.loader import load_engine
    from gpu_jobs.settings import ServerSettings

    bf16 = build(BuildRequest(source=tiny_source, output=tmp_path / "bf16", method="bf16", model_name="tiny"))
    int8 = build(BuildRequest(source=tiny_source, output=tmp_path / "int8", method="int8", model_name="tiny"))

    assert (int8.method, int8.bits) == ("int8", 8)
    assert int8.total_bytes < bf16.total_bytes
    assert int8.perplexity is not None and int8.perplexity.reference == bf16.perplexity.reference  # type: ignore[union-attr]
    engine = load_engine(tmp_path / "int8", ServerSettings.from_environment({}))
    (result,) = engine.generate([GenerationRequest(prompt="one two", max_tokens=3, temperature=0)])
    assert result.error is None and result.completion_tokens <= 3
