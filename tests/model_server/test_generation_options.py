"""Every generation option the API accepts, on vLLM (CPU build, a tiny random model): structured
output that always validates, forced and automatic tool calls, logprobs with bytes, n seeded choices,
penalties, logit bias, and the finish_reason rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratus.localcloud.endpoint import ModelProcess

from .conftest import chat, pack, post

jsonschema = pytest.importorskip("jsonschema")

ORDER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome", "Oslo"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
        "express": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 8},
    },
    "required": ["city", "count", "express", "note"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


def run(server: ModelProcess, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = post(server, pack(*requests))
    assert status == 200, body
    return list(body["results"])


def test_json_schema_output_always_validates_at_temperature_one(server: ModelProcess) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER, "strict": True}}
    results = run(
        server, *(chat("order", temperature=1.0, seed=s, max_tokens=120, response_format=format_) for s in range(4))
    )
    for result in results:
        (choice,) = result["choices"]
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(choice["text"]), ORDER)
        else:  # a tiny model can fill max_tokens inside the note string: `length`, as with OpenAI
            assert choice["finish_reason"] == "length" and choice["text"].startswith("{")
    assert any(r["choices"][0]["finish_reason"] == "stop" for r in results)


def test_a_document_cut_at_max_tokens_finishes_length_and_says_so(server: ModelProcess) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}}
    (result,) = run(server, chat("order", temperature=1.0, seed=3, max_tokens=3, response_format=format_))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "length" and result["usage"]["completion_tokens"] == 3


def test_json_object_output_is_an_object(server: ModelProcess) -> None:
    results = run(
        server,
        *(chat("x", temperature=1.0, seed=s, max_tokens=80, response_format={"type": "json_object"}) for s in range(4)),
    )
    for result in results:
        (choice,) = result["choices"]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["text"]), dict)
        else:
            assert choice["text"].startswith("{")


def test_a_forced_tool_call_validates_against_its_function_schema(server: ModelProcess) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    (result,) = run(server, chat("weather?", max_tokens=160, tools=[WEATHER, TIME], tool_choice=named))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["text"] == ""
    (call,) = choice["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])  # type: ignore[index]


def test_required_picks_one_of_the_tools_and_its_arguments_validate(server: ModelProcess) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}  # type: ignore[index]
    results = run(
        server,
        *(
            chat("help", temperature=1.0, seed=s, max_tokens=160, tools=[WEATHER, TIME], tool_choice="required")
            for s in range(3)
        ),
    )
    for result in results:
        (choice,) = result["choices"]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["tool_calls"]
        jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])


def test_a_forced_call_cut_at_max_tokens_finishes_length_without_a_call(server: ModelProcess) -> None:
    (result,) = run(server, chat("weather?", max_tokens=4, tools=[WEATHER], tool_choice="required"))
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "length" and choice.get("tool_calls") is None


def test_tool_choice_none_never_calls(server: ModelProcess) -> None:
    (result,) = run(server, chat("weather?", max_tokens=16, tools=[WEATHER], tool_choice="none"))
    (choice,) = result["choices"]
    assert choice["finish_reason"] in ("stop", "length") and choice.get("tool_calls") is None


def test_logprobs_have_the_right_shape_with_bytes(server: ModelProcess) -> None:
    (result,) = run(server, chat("the quick", temperature=1.0, seed=5, max_tokens=10, logprobs=True, top_logprobs=5))
    (choice,) = result["choices"]
    entries = choice["logprobs"]
    assert len(entries) == result["usage"]["completion_tokens"]
    for entry in entries:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 5
        tops = [top["logprob"] for top in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True) and all(value <= 0 for value in tops)
        assert isinstance(entry["bytes"], list) and all(0 <= b < 256 for b in entry["bytes"])
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]


def test_n_choices_are_distinct_reproducible_with_a_seed_and_all_billed(server: ModelProcess) -> None:
    first, again, single = run(
        server,
        chat("the quick", temperature=1.0, seed=11, n=4, max_tokens=12),
        chat("the quick", temperature=1.0, seed=11, n=4, max_tokens=12),
        chat("the quick", temperature=1.0, seed=11, max_tokens=12),
    )
    texts = [choice["text"] for choice in first["choices"]]
    assert [choice["index"] for choice in first["choices"]] == [0, 1, 2, 3]
    assert len(set(texts)) == 4
    assert texts == [choice["text"] for choice in again["choices"]]
    assert texts[0] == single["choices"][0]["text"]  # choice i is seeded seed + i
    assert first["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]  # the prompt counts once
    assert first["usage"]["completion_tokens"] == 4 * 12 or any(c["finish_reason"] == "stop" for c in first["choices"])


def test_logit_bias_forces_or_forbids_a_token(server: ModelProcess, tiny_artifact: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    greedy, forced = run(
        server,
        chat("the quick", max_tokens=8, logprobs=True),
        chat("the quick", max_tokens=8, logprobs=True, logit_bias={42: 100}),
    )
    favourite = greedy["choices"][0]["logprobs"][0]["token"]
    (favourite_id,) = tokenizer(favourite, add_special_tokens=False).input_ids
    (forbidden,) = run(server, chat("the quick", max_tokens=8, logprobs=True, logit_bias={favourite_id: -100}))

    assert forbidden["choices"][0]["logprobs"][0]["token"] != favourite
    assert [entry["token"] for entry in forced["choices"][0]["logprobs"]] == [tokenizer.decode([42])] * 8


def test_a_frequency_penalty_thins_out_repeats(server: ModelProcess) -> None:
    plain, penalized = run(
        server,
        chat("one two", max_tokens=40, logprobs=True),
        chat("one two", max_tokens=40, logprobs=True, frequency_penalty=2.0),
    )

    def distinct(result: dict[str, Any]) -> float:
        tokens = [entry["token"] for entry in result["choices"][0]["logprobs"]]
        return len(set(tokens)) / len(tokens)

    assert distinct(penalized) > distinct(plain)


def test_a_conversation_with_tools_and_tool_results_stays_within_the_admission_bound(server: ModelProcess) -> None:
    from stratus_core.contract import PackedRequest
    from stratus_core.intake import worst_case_tokens

    conversation = {
        "kind": "chat",
        "messages": [
            {"role": "user", "content": "weather in Oslo, and the time?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "C"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear", "celsius": -3}'},
        ],
        "params": {"max_tokens": 4, "temperature": 0, "tools": [WEATHER, TIME], "tool_choice": "auto"},
    }
    (result,) = run(server, conversation)
    bound, _ = worst_case_tokens(
        PackedRequest.model_validate({"job_id": "j", "tenant_id": "t", "model": "tiny", **conversation})
    )
    assert 0 < result["usage"]["prompt_tokens"] <= bound
