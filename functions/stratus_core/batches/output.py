"""The lines of a batch's output file (one per completed request) and error file (one per failed,
expired or cancelled request), in OpenAI's format. An error line's status and type come from the
same table as the API's answer to a client that waited (`stratus_core.failures`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from stratus_core.batches.jsonl import batch_job_id
from stratus_core.batches.models import BatchUsage
from stratus_core.contract import JobError, Usage
from stratus_core.failures import failure_kind
from stratus_core.jobs import Job


def batch_file_id(batch_id: str, kind: Literal["output", "error"]) -> str:
    """The id of a batch's output or error file, derived from the batch id alone (shaped like any
    other file id) so that every finalizer of one batch writes the same file."""
    return "file-" + hashlib.sha256(f"{batch_id}/{kind}".encode()).hexdigest()[:24]


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def _line_id(job: Job) -> str:
    return f"batch_req_{job.job_id.rsplit('-', 1)[-1]}_{job.batch_id}"


def output_line(job: Job) -> dict[str, Any]:
    return answered(job.custom_id, job.job_id, _line_id(job), job.result)


def error_line(job: Job) -> dict[str, Any]:
    error = job.error or JobError(code=job.status.value, message=f"the request was {job.status.value}")
    return failed(job.custom_id, job.job_id, _line_id(job), error)


def chunk_line_ids(batch_id: str, line: int) -> tuple[str, str]:
    """A chunk line's `id` and `request_id` in the output files: the same as a line's own job had."""
    return f"batch_req_{line:06d}_{batch_id}", batch_job_id(batch_id, line)


def answered(custom_id: str | None, request_id: str, line_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def failed(custom_id: str | None, request_id: str, line_id: str, error: JobError) -> dict[str, Any]:
    kind = failure_kind(error.code)
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": {
            "status_code": int(kind.status),
            "request_id": request_id,
            "body": {"error": {"message": error.message, "type": kind.type, "param": None, "code": error.code}},
        },
        "error": {"code": error.code, "message": error.message},
    }


def add_usage(total: BatchUsage, usage: Usage) -> BatchUsage:
    return BatchUsage(
        input_tokens=total.input_tokens + usage.prompt_tokens,
        output_tokens=total.output_tokens + usage.completion_tokens,
        total_tokens=total.total_tokens + usage.total_tokens,
    )
