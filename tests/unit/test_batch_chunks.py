"""A batch's lines in chunks (`stratus_core.batches.chunks`): ids, how lines are cut, and which lines
a month admits."""

from __future__ import annotations

import json

from stratus_core.admission import fit_lines
from stratus_core.batches.chunks import (
    chunk_job_id,
    chunked,
    is_chunk,
    line_request_id,
    lines_of,
    split_line_request_id,
)
from stratus_core.batches.jsonl import parse_lines

BATCH = "batch_" + "0" * 24


def lines_for(models: list[str]) -> bytes:
    body = {"messages": [{"role": "user", "content": "q"}]}
    url = "/v1/chat/completions"
    return "".join(
        json.dumps({"custom_id": f"c{i}", "method": "POST", "url": url, "body": {**body, "model": m}}) + "\n"
        for i, m in enumerate(models)
    ).encode()


def test_a_chunk_id_says_how_many_requests_it_carries_and_a_line_id_finds_its_chunk() -> None:
    chunk = chunk_job_id(BATCH, 3, 32)
    assert chunk == f"{BATCH}-c00003n32"
    assert (lines_of(chunk), lines_of(f"{BATCH}-000007"), lines_of("job_" + "a" * 24)) == (32, 1, 1)
    assert is_chunk(chunk) and not is_chunk(f"{BATCH}-000007")
    assert split_line_request_id(line_request_id(chunk, 70)) == (chunk, 70)
    # an interactive job, a line of a batch started before chunks, and ids that only look close
    for other in ("job_" + "a" * 24, f"{BATCH}-000007", f"{BATCH}-000007/000001", f"{chunk}/x1", f"{chunk}/"):
        assert split_line_request_id(other) is None


def test_lines_are_cut_by_model_in_file_order_and_always_the_same_way() -> None:
    parsed, errors = parse_lines(lines_for(["a", "b", "a", "a", "b", "a"]), "/v1/chat/completions")
    assert errors == []

    chunks = [[line.line for line in chunk] for chunk in chunked(parsed, 2)]

    assert chunks == [[1, 3], [4, 6], [2, 5]]
    assert chunks == [[line.line for line in chunk] for chunk in chunked(parsed, 2)]


def test_the_month_admits_lines_one_by_one_in_order_as_if_each_came_alone() -> None:
    # 100 of room: 40 fits (60 left), 70 does not, 50 fits (10 left), 20 does not, 10 fits
    assert fit_lines({1: 40, 2: 70, 3: 50, 4: 20, 5: 10}, 100) == {1: 40, 3: 50, 5: 10}
    assert fit_lines({1: 40}, 39) == {}
    assert fit_lines({2: 5, 1: 5}, 5) == {1: 5}  # in line order, not in the order given
