"""The generation options through the official `openai` client and the whole asynchronous path (the
fake endpoint's echo engine answers): what reaches the model server, what the client gets back, and
what is billed. The options' effect on a real model is in tests/model_server/test_generation_options.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import openai
import pytest

from stratus_core.contract import PackedRequest, RequestResult
from stratus_core.keys import IssuedKey
from stratus_core.services import Services
from tests.fakes import echo

from .conftest import Pipeline

MODEL = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture
def served(running: Pipeline) -> list[PackedRequest]:
    """The requests as the model server received them."""
    seen: list[PackedRequest] = []

    def recording(request: PackedRequest) -> RequestResult:
        seen.append(request)
        return echo(request)

    running.endpoint.engine = recording
    return seen


def billed(services: Services, tenant: str) -> tuple[int, int]:
    totals = services.usage.report(tenant, *[datetime.now(UTC).date()] * 2).totals
    return totals.prompt_tokens, totals.completion_tokens


def test_n_choices_each_billed(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    served: list[PackedRequest],
) -> None:
    client = client_for(make_tenant("acme").api_key)

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "say hi"}], max_tokens=8, n=3, seed=7
    )

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * 3  # three choices of "echo: say hi"
    assert billed(services, "acme") == (completion.usage.prompt_tokens, 9)
    assert (served[0].params.n, served[0].params.seed) == (3, 7)


def test_logprobs_reach_the_client_in_both_shapes(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], served: list[PackedRequest]
) -> None:
    client = client_for(make_tenant("acme").api_key)

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "say hi"}], max_tokens=8, logprobs=True, top_logprobs=2
    )
    text = client.completions.create(model=MODEL, prompt="count to three", max_tokens=8, logprobs=2)

    logprobs = chat.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [entry.token for entry in logprobs.content] == ["echo:", "say", "hi"]
    assert all(len(entry.top_logprobs) == 2 for entry in logprobs.content)
    legacy = text.choices[0].logprobs
    assert legacy is not None
    assert legacy.tokens == ["echo:", "count", "to", "three"]
    assert legacy.text_offset == [0, 5, 10, 12]
    assert legacy.top_logprobs is not None and all(len(top) == 2 for top in legacy.top_logprobs)
    assert [(r.params.logprobs, r.params.top_logprobs) for r in served] == [(True, 2), (True, 2)]


def test_structured_output_penalties_and_bias_reach_the_model_server(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], served: list[PackedRequest]
) -> None:
    client = client_for(make_tenant("acme").api_key)
    schema = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}

    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "a city"}],
        max_tokens=8,
        response_format=schema,  # type: ignore[arg-type]
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        logit_bias={"42": -100, "7": 3.5},
    )
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=8, response_format={"type": "json_object"}
    )
    response = client.responses.create(
        model=MODEL,
        input="a city",
        max_output_tokens=8,
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
    )

    first, second, third = (request.params for request in served)
    assert first.response_format is not None and first.response_format.json_schema is not None
    assert first.response_format.json_schema.schema_ == CITY
    assert (first.presence_penalty, first.frequency_penalty, first.logit_bias) == (0.5, -0.25, {42: -100.0, 7: 3.5})
    assert second.response_format is not None and second.response_format.type == "json_object"
    assert third.response_format is not None and third.response_format.json_schema is not None
    assert third.response_format.json_schema.schema_ == CITY
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_a_forced_tool_call_and_the_conversation_that_answers_it(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    served: list[PackedRequest],
) -> None:
    client = client_for(make_tenant("acme").api_key)
    question = {"role": "user", "content": "weather in Oslo?"}
    forced = {"type": "function", "function": {"name": "get_weather"}}

    called = client.chat.completions.create(
        model=MODEL,
        messages=[question],
        max_tokens=16,
        tools=[WEATHER],
        tool_choice=forced,  # type: ignore[list-item,arg-type]
    )
    (choice,) = called.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"echo": "weather in Oslo?"}  # type: ignore[union-attr]

    answer = client.chat.completions.create(
        model=MODEL,
        max_tokens=16,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            question,  # type: ignore[list-item]
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 18 C"},
        ],
    )
    assert answer.choices[0].message.content == "echo: sunny, 18 C"
    streamed = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[question],
            max_tokens=16,
            tools=[WEATHER],
            tool_choice="required",
            stream=True,  # type: ignore[list-item]
        )
    )
    deltas = [chunk.choices[0].delta for chunk in streamed if chunk.choices]
    (streamed_call,) = [call for delta in deltas for call in delta.tool_calls or []]
    assert streamed_call.function is not None and streamed_call.function.name == "get_weather"
    assert [chunk.choices[0].finish_reason for chunk in streamed if chunk.choices][-1] == "tool_calls"

    conversation = served[1].messages or []
    assert [m.role for m in conversation] == ["user", "assistant", "tool"]
    assert conversation[1].tool_calls is not None and conversation[1].tool_calls[0].id == call.id
    assert conversation[2].tool_call_id == call.id
    assert services.usage.report("acme", *[datetime.now(UTC).date()] * 2).totals.requests == 3


def test_out_of_range_and_unsupported_options_are_400s_that_name_the_parameter(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], served: list[PackedRequest]
) -> None:
    client = client_for(make_tenant("acme").api_key)
    hi = [{"role": "user", "content": "hi"}]
    refused = {
        "n": {"n": 9},
        "top_logprobs": {"logprobs": True, "top_logprobs": 21},
        "logit_bias": {"logit_bias": {"hello": 1}},
        "tool_choice": {"tool_choice": "required"},
        "best_of": {"extra_body": {"best_of": 2}},
        "function_call": {"extra_body": {"function_call": "auto"}},
    }
    for parameter, options in refused.items():
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model=MODEL, messages=hi, max_tokens=4, **options)  # type: ignore[call-overload]
        assert bad.value.param == parameter, options

    client.chat.completions.create(  # neutral values of what is not implemented are accepted
        model=MODEL, messages=hi, max_tokens=4, extra_body={"best_of": 1, "echo": False, "store": False}
    )
    assert len(served) == 1


def test_a_history_whose_tool_call_arguments_are_not_a_json_object_is_a_400_and_reaches_no_model(
    client_for: Callable[[str], openai.OpenAI], make_tenant: Callable[..., IssuedKey], served: list[PackedRequest]
) -> None:
    """Issue 24: such a history failed the model server's whole pack (every tenant's requests in it)."""
    client = client_for(make_tenant("acme").api_key)
    for arguments in ("{not json", "[1, 2]", '"a string"'):
        history = [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], max_tokens=4)  # type: ignore[arg-type,list-item]
        assert "function.arguments must be a JSON object" in bad.value.message
        assert bad.value.param is not None and bad.value.param.startswith("messages")
    assert served == []


def test_a_max_tokens_the_context_window_cannot_hold_is_a_400_before_anything_is_reserved(
    services: Services,
    client_for: Callable[[str], openai.OpenAI],
    make_tenant: Callable[..., IssuedKey],
    served: list[PackedRequest],
) -> None:
    """The context window is one number: the template's MaxModelLen (4,096 by default), which vLLM serves too."""
    client = client_for(make_tenant("acme").api_key)
    assert services.settings.max_model_len == 4096
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4096)
    assert (bad.value.code, bad.value.param) == ("context_length_exceeded", "max_tokens")
    assert "4096 tokens" in bad.value.message
    assert served == [] and billed(services, "acme") == (0, 0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4095)
    assert len(served) == 1
