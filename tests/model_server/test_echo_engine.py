"""The instant echo engine used by load tests: no model, the artifact's tokenizer for usage, and the
same pack handler as vLLM's server."""

from __future__ import annotations

from pathlib import Path

from stratus.localcloud.endpoint import ModelProcess
from stratus_core.contract import PackResult

from .conftest import chat, completion, pack, post


def test_echo_answers_at_once_with_usage_counted_by_the_artifacts_tokenizer(
    echo_server: ModelProcess, tiny_artifact: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    prompt = "the quick brown fox jumps over the lazy dog"

    status, body = post(echo_server, pack(completion(prompt, max_tokens=3), {**chat("hi"), "model": "other"}))

    assert status == 200
    echoed, unknown = PackResult.model_validate(body).results
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    assert echoed.usage is not None and echoed.choices is not None
    assert (echoed.usage.prompt_tokens, echoed.usage.completion_tokens) == (len(ids), 3)
    assert echoed.choices[0].finish_reason == "length"
    assert echoed.choices[0].text == tokenizer.decode(ids[:3])
    assert unknown.error is not None and unknown.error.code == "model_not_found"
