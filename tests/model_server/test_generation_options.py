"""Generation options on a tiny random model (fp32, in process): structured output that always
validates, forced tool calls, logprobs, n choices, penalties and logit bias, and a batch mixing
constrained and unconstrained rows that gives each the answer it gets alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
jsonschema = pytest.importorskip("jsonschema")

from gpu_jobs.engine.base import GenerationRequest, GenerationResult  # noqa: E402
from gpu_jobs.engine.transformers_engine import OpenAIPenalties, TransformersEngine  # noqa: E402
from gpu_jobs.loader import load_engine  # noqa: E402
from gpu_jobs.options import generation_requests, request_result  # noqa: E402
from gpu_jobs.settings import ServerSettings  # noqa: E402
from stratus_core.contract import Message, PackedRequest, SamplingParams  # noqa: E402

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


@pytest.fixture(scope="module")
def engine(tiny_artifact: Path) -> TransformersEngine:
    return load_engine(tiny_artifact, ServerSettings.from_environment({"STRATUS_DTYPE": "float32"}))


def chat(**params: Any) -> PackedRequest:
    return PackedRequest(
        job_id="job_1",
        tenant_id="acme",
        kind="chat",
        model="tiny",
        messages=[Message(role="user", content="the quick brown fox")],
        params=SamplingParams(**{"max_tokens": 48, **params}),
    )


def run(engine: TransformersEngine, request: PackedRequest) -> dict[str, Any]:
    rows = engine.generate(generation_requests(engine, request))
    return request_result(engine, request, rows).model_dump()


def test_json_schema_output_always_validates_at_temperature_one(engine: TransformersEngine) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER, "strict": True}}
    outputs = [
        run(engine, chat(temperature=1.0, seed=seed, max_tokens=120, response_format=format_))["choices"][0]
        for seed in range(25)
    ]

    assert {choice["finish_reason"] for choice in outputs} == {"stop"}  # every schema here is bounded
    for choice in outputs:
        jsonschema.validate(json.loads(choice["text"]), ORDER)
    assert len({choice["text"] for choice in outputs}) > 5  # sampled, not fixed


def test_properties_come_in_the_order_the_schema_declares_them(engine: TransformersEngine) -> None:
    declared = {  # not alphabetical: as OpenAI's structured outputs do, the document follows the schema
        "type": "object",
        "properties": {
            "zone": {"enum": ["UTC", "CET"]},
            "count": {"type": "integer", "maximum": 9},
            "at": {"type": "boolean"},
        },
        "required": ["zone", "count", "at"],
        "additionalProperties": False,
    }
    format_ = {"type": "json_schema", "json_schema": {"name": "declared", "schema": declared, "strict": True}}
    for seed in range(3):
        (choice,) = run(engine, chat(temperature=1.0, seed=seed, max_tokens=60, response_format=format_))["choices"]
        assert choice["finish_reason"] == "stop" and list(json.loads(choice["text"])) == ["zone", "count", "at"]


def test_a_document_cut_at_max_tokens_finishes_length_and_says_so(engine: TransformersEngine) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}}
    short = run(engine, chat(temperature=1.0, seed=3, max_tokens=3, response_format=format_))
    (choice,) = short["choices"]
    assert choice["finish_reason"] == "length"
    with pytest.raises(ValueError):  # cut at max_tokens: incomplete, and it says so
        json.loads(choice["text"])
    assert choice["text"].startswith("{")


def test_a_forced_tool_call_validates_against_its_function_schema(engine: TransformersEngine) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in range(10):
        result = run(engine, chat(temperature=1.0, seed=seed, max_tokens=160, tools=[WEATHER, TIME], tool_choice=named))
        (choice,) = result["choices"]
        assert choice["finish_reason"] == "tool_calls" and choice["text"] == ""
        (call,) = choice["tool_calls"]
        assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


def test_required_picks_one_of_the_tools_and_its_arguments_validate(engine: TransformersEngine) -> None:
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, TIME)}
    names = set()
    for seed in range(12):
        (choice,) = run(
            engine, chat(temperature=1.0, seed=seed, max_tokens=160, tools=[WEATHER, TIME], tool_choice="required")
        )["choices"]
        (call,) = choice["tool_calls"]
        jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])
        names.add(call["function"]["name"])
    assert names <= set(schemas)


def test_logprobs_have_the_right_shape_and_the_chosen_token_ranks_among_its_alternatives(
    engine: TransformersEngine,
) -> None:
    (choice,) = run(engine, chat(temperature=1.0, seed=5, max_tokens=10, logprobs=True, top_logprobs=5))["choices"]
    entries = choice["logprobs"]
    assert len(entries) == len(
        engine.generate(generation_requests(engine, chat(temperature=1.0, seed=5, max_tokens=10)))[0].token_ids
    )
    for entry in entries:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 5
        tops = [top["logprob"] for top in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True) and all(value <= 0 for value in tops)
        if entry["logprob"] >= tops[-1]:  # it ranks: it is listed, with the same log-probability
            listed = {top["token"]: top["logprob"] for top in entry["top_logprobs"]}
            assert math.isclose(listed[entry["token"]], entry["logprob"], abs_tol=1e-6)
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
    assert "".join(entry["token"] for entry in entries) == choice["text"]


def test_n_choices_are_distinct_reproducible_with_a_seed_and_all_billed(engine: TransformersEngine) -> None:
    first = run(engine, chat(temperature=1.0, seed=11, n=4, max_tokens=12))
    again = run(engine, chat(temperature=1.0, seed=11, n=4, max_tokens=12))

    texts = [choice["text"] for choice in first["choices"]]
    assert [choice["index"] for choice in first["choices"]] == [0, 1, 2, 3]
    assert len(set(texts)) == 4
    assert texts == [choice["text"] for choice in again["choices"]]
    single = run(engine, chat(temperature=1.0, seed=11, max_tokens=12))
    assert first["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]  # the prompt counts once
    rows = engine.generate(generation_requests(engine, chat(temperature=1.0, seed=11, n=4, max_tokens=12)))
    assert first["usage"]["completion_tokens"] == sum(row.completion_tokens for row in rows)


def test_logit_bias_forces_or_forbids_a_token(engine: TransformersEngine) -> None:
    greedy = engine.generate(generation_requests(engine, chat(temperature=0, max_tokens=8)))[0].token_ids
    favourite = greedy[0]
    forbidden = engine.generate(
        generation_requests(engine, chat(temperature=0, max_tokens=8, logit_bias={favourite: -100}))
    )[0].token_ids
    forced = engine.generate(generation_requests(engine, chat(temperature=0, max_tokens=8, logit_bias={42: 100})))[0]

    assert favourite not in forbidden
    assert forced.token_ids == [42] * 8


def test_penalties_are_openais_additive_penalties_over_the_generated_tokens() -> None:
    scores = torch.zeros((1, 6))
    prompt_then_generated = torch.tensor([[5, 5, 5, 1, 2, 2, 2]])  # prompt [5, 5, 5], generated [1, 2, 2, 2]

    penalized = OpenAIPenalties(presence=0.5, frequency=0.25, prompt_length=3)(prompt_then_generated, scores)

    assert penalized.tolist() == [[0.0, -0.75, -1.25, 0.0, 0.0, 0.0]]  # 5 is only in the prompt: untouched


def test_a_frequency_penalty_thins_out_repeats(engine: TransformersEngine) -> None:
    def distinct(penalty: float) -> float:
        rows = engine.generate(
            generation_requests(engine, chat(temperature=0, max_tokens=40, frequency_penalty=penalty))
        )
        return len(set(rows[0].token_ids)) / len(rows[0].token_ids)

    assert distinct(2.0) > distinct(0.0)


def test_a_batch_mixing_constrained_and_unconstrained_rows_gives_each_its_answer_alone(
    engine: TransformersEngine,
) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}}
    requests = [
        *generation_requests(engine, chat(temperature=1.0, seed=1, max_tokens=120, response_format=format_)),
        *generation_requests(engine, chat(temperature=0, max_tokens=20)),
        *generation_requests(engine, chat(temperature=0.8, seed=2, max_tokens=20, presence_penalty=1.0)),
        *generation_requests(engine, chat(temperature=0, max_tokens=160, tools=[WEATHER], tool_choice="required")),
        *generation_requests(engine, chat(temperature=1.0, seed=4, logprobs=True, top_logprobs=2, max_tokens=6)),
    ]

    together = engine.generate(requests)

    for request, result in zip(requests, together, strict=True):
        (alone,) = engine.generate([request])
        assert result.token_ids == alone.token_ids
        assert result.text == alone.text
    assert json.loads(together[0].text)


def test_an_invalid_schema_fails_its_request_alone(engine: TransformersEngine) -> None:
    bad = GenerationRequest(
        prompt="x", max_tokens=4, schema={"type": "object", "properties": {"a": {"type": "nonsense"}}}
    )
    fine = GenerationRequest(prompt="x", max_tokens=4, temperature=0)
    failed, ok = engine.generate([bad, fine])
    assert isinstance(failed, GenerationResult) and failed.error_code == "invalid_request"
    assert ok.error is None and ok.completion_tokens > 0


def test_json_object_output_is_an_object(engine: TransformersEngine) -> None:
    for seed in range(8):
        (choice,) = run(
            engine, chat(temperature=1.0, seed=seed, max_tokens=160, response_format={"type": "json_object"})
        )["choices"]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["text"]), dict)
        else:
            assert choice["text"].startswith("{")


def test_a_conversation_with_tools_and_tool_results_stays_within_the_admission_bound(
    engine: TransformersEngine,
) -> None:
    from gpu_jobs.options import render
    from stratus_core.contract import ToolCall
    from stratus_core.intake import worst_case_tokens

    call = ToolCall.model_validate(
        {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "C"}'}}
    )
    request = chat(tools=[WEATHER, TIME], tool_choice="auto").model_copy(
        update={
            "messages": [
                Message(role="user", content="weather in Oslo, and the time?"),
                Message(role="assistant", tool_calls=[call]),
                Message(role="tool", tool_call_id="call_1", content='{"sky": "clear", "celsius": -3}'),
            ]
        }
    )

    rendered = render(engine, request)

    assert '"name":"get_weather"' in rendered and "weather in Oslo" in rendered and '"celsius": -3' in rendered
    assert engine.count_tokens(rendered) <= worst_case_tokens(request)[0]
