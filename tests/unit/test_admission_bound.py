from __future__ import annotations

from stratus_core.admission import PER_MESSAGE_OVERHEAD_TOKENS, TEMPLATE_OVERHEAD_TOKENS, worst_case_prompt_tokens
from stratus_core.contract import Usage


def test_bound_counts_utf8_bytes_not_characters() -> None:
    # "héllo" is 5 characters but 6 UTF-8 bytes; "日本" is 2 characters but 6 bytes.
    bound = worst_case_prompt_tokens(["héllo", "日本"])
    assert bound == TEMPLATE_OVERHEAD_TOKENS + (6 + PER_MESSAGE_OVERHEAD_TOKENS) + (6 + PER_MESSAGE_OVERHEAD_TOKENS)


def test_bound_of_no_messages_is_the_template_overhead() -> None:
    assert worst_case_prompt_tokens([]) == TEMPLATE_OVERHEAD_TOKENS


def test_usage_total_must_equal_the_sum() -> None:
    assert Usage.of(7, 5).total_tokens == 12
    try:
        Usage(prompt_tokens=7, completion_tokens=5, total_tokens=13)
    except ValueError as error:
        assert "total_tokens" in str(error)
    else:
        raise AssertionError("a wrong total was accepted")


def test_every_choice_may_use_max_tokens_and_tools_count_with_their_instructions() -> None:
    from stratus_core.contract import Message, PackedRequest, SamplingParams, Tool
    from stratus_core.intake import TOOLS_OVERHEAD_TOKENS, worst_case_tokens

    tool = Tool.model_validate({"function": {"name": "get_weather", "parameters": {"type": "object"}}})
    plain = PackedRequest(
        job_id="job_1",
        tenant_id="acme",
        kind="chat",
        model="m",
        messages=[Message(role="user", content="hi")],
        params=SamplingParams(max_tokens=50, n=3),
    )
    with_tools = plain.model_copy(update={"params": SamplingParams(max_tokens=50, tools=[tool])})

    assert worst_case_tokens(plain) == (worst_case_prompt_tokens(["hi"]), 150)
    prompt, completion = worst_case_tokens(with_tools)
    tool_bytes = len(tool.model_dump_json())
    assert prompt == worst_case_prompt_tokens(["hi", tool.model_dump_json()]) + TOOLS_OVERHEAD_TOKENS + tool_bytes
    assert completion == 50
