"""A batch's lines in chunks: one job, one reservation and one pack per chunk of lines.

A batch line used to be a request of its own: its own job item, its own `RESV#` reservation and
its own settlement transaction, which also counted it on the batch item. That was 23 DynamoDB write
units a line, 86 % of a batch line's bill (`bench/RESULTS.md`). Now the batch function cuts a
batch's lines into **chunks** of up to `MaxPackSize` lines of one model, and a chunk is what every
part of the pipeline sees as one job:

- **admitted once**: one reservation (a `RESV#` item written in one transaction with the tenant
  item's month counter) for the sum of its admitted lines' worst-case bounds. Which lines fit is
  decided line by line, in order, against the month's room as the tenant item shows it (the same
  outcome as admitting the lines one by one); the reservation records the lines it admitted, so a
  redelivered start that finds it rebuilds the same chunk;
- **stored once**: its lines (each with its `custom_id`, and either the request or the reason it
  was refused) are one S3 object at the job's `body_key` (`ChunkBody`);
- **held, let go, dispatched once**: the scheduler and the dispatcher move one job item; the
  dispatcher sends a chunk as a pack of its own, each line under `line_request_id` (the chunk's
  id, a slash, the line number), which is how the results function finds the chunk again;
- **settled once**: one transaction moves the chunk's job to its terminal status, settles its
  reservation at the sum of the model server's counts for the lines that completed (releasing the
  rest), and counts every line of the chunk on the batch item, completed or failed (refused lines
  included). A duplicate or late notification fails the job's condition and changes nothing.

The answers are not copied anywhere: the finalizer reads each completed chunk's lines from
SageMaker's output file (the job's `output_location`) and its body, and writes the batch's output
and error files from them. Both stay in the bucket for `ArtifactRetentionDays` (at least 2, past a
batch's 24 h window).

A chunk's job id is `<batch id>-c<ordinal>n<lines>`: it sorts with the batch's other jobs
(`for_batch`), and it says how many requests it carries (`lines_of`), which the scheduler counts
as work from the index keys alone. Batches started before chunks (a batch item without
`chunk_lines`) keep one job per line (`batch_job_id`) to the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from stratus_core.contract import JobError, PackedRequest, RequestResult

if TYPE_CHECKING:
    from stratus_core.batches.jsonl import ParsedLine

CHUNK_ID = re.compile(r"-c(\d{5})n(\d{1,4})$")


def chunk_job_id(batch_id: str, ordinal: int, lines: int) -> str:
    return f"{batch_id}-c{ordinal:05d}n{lines}"


def lines_of(job_id: str) -> int:
    """How many requests a job carries: a chunk's lines, else one."""
    match = CHUNK_ID.search(job_id)
    return int(match.group(2)) if match else 1


def is_chunk(job_id: str) -> bool:
    return CHUNK_ID.search(job_id) is not None


def line_request_id(chunk_id: str, line: int) -> str:
    """The id a chunk's line goes to the model server under (and comes back with)."""
    return f"{chunk_id}/{line:06d}"


def split_line_request_id(request_id: str) -> tuple[str, int] | None:
    """(chunk id, line) of a chunk line's request id; None for any other request."""
    chunk_id, slash, line = request_id.rpartition("/")
    if not slash or not line.isdigit() or not is_chunk(chunk_id):
        return None
    return chunk_id, int(line)


def answered_line(result: RequestResult) -> bool:
    """Whether a line's result is an answer (billed, in the output file), not a failure (the error
    file). Settlement and the finalizer decide with this one test, so they always agree."""
    return result.error is None and result.choices is not None and result.usage is not None


def chunked(lines: Sequence[ParsedLine], size: int) -> Iterator[list[ParsedLine]]:
    """The batch's lines by model (models in the order of their first line, lines in file order),
    each model's cut into chunks of up to `size`. The same file and size always give the same chunks."""
    by_model: dict[str, list[ParsedLine]] = {}
    for line in lines:
        by_model.setdefault(line.request.model, []).append(line)
    for model_lines in by_model.values():
        for start in range(0, len(model_lines), size):
            yield model_lines[start : start + size]


class ChunkLine(BaseModel):
    """One line of a chunk: its request when it was admitted, else why it was refused."""

    model_config = ConfigDict(extra="forbid")

    line: int
    custom_id: str
    request: PackedRequest | None = None
    error: JobError | None = None


class ChunkBody(BaseModel):
    """A chunk's lines, stored at its job's `body_key`."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    lines: list[ChunkLine]

    @property
    def requests(self) -> list[PackedRequest]:
        return [line.request for line in self.lines if line.request is not None]
