"""OpenAI's chat and text completions, answered when the job finishes or with 202 and the job."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path

from api.caller import caller, services
from stratus_core.http.errors import job_failure
from stratus_core.inference import MAX_WAIT_SECONDS
from stratus_core.jobs import Job, JobStatus, JobView
from stratus_core.keys import Scope
from stratus_core.openai_types import ChatCompletion, ChatCompletionRequest, CompletionRequest, TextCompletion

router = Router()

DEFAULT_WAIT_SECONDS = 20
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)

PreferHeader = Annotated[
    str | None,
    Header(alias="prefer", description="`wait=N` (0-25 s, default 20): how long to wait for the result; 0 = don't."),
]


def wait_seconds(prefer: str | None) -> int:
    match = _WAIT.search(prefer or "")
    return min(int(match.group(1)), MAX_WAIT_SECONDS) if match else DEFAULT_WAIT_SECONDS


def _answer(job: Job, waited: int) -> Response[Any]:
    headers = {"x-stratus-job-id": job.job_id, "Preference-Applied": f"wait={waited}"}
    if job.status is JobStatus.COMPLETED and job.result is not None:
        return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, body=job.result, headers=headers)
    if job.status.is_terminal:
        failure = job_failure(
            job.error.code if job.error else job.status.value,
            job.error.message if job.error else f"the request was {job.status.value}",
        )
        return Response(failure.status, content_types.APPLICATION_JSON, body=failure.body.model_dump(), headers=headers)
    headers["Location"] = f"/v1/jobs/{job.job_id}"
    return Response(
        HTTPStatus.ACCEPTED,
        content_types.APPLICATION_JSON,
        body=JobView.of(job).model_dump(mode="json"),
        headers=headers,
    )


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (waits for the result, or 202 with the job)",
    tags=["inference"],
    responses={
        200: {"description": "The completion", "content": {"application/json": {"model": ChatCompletion}}},
        202: {"description": "Still running: the job", "content": {"application/json": {"model": JobView}}},
    },
)
def chat_completions(body: ChatCompletionRequest, prefer: PreferHeader = None) -> Response[Any]:
    principal = caller(router, Scope.INFERENCE)
    service = services(router).inference
    job = service.submit(principal.tenant_id, body)
    waited = wait_seconds(prefer)
    return _answer(service.wait(principal.tenant_id, job.job_id, waited) if waited else job, waited)


@router.post(
    "/v1/completions",
    summary="Create a text completion (waits for the result, or 202 with the job)",
    tags=["inference"],
    responses={
        200: {"description": "The completion", "content": {"application/json": {"model": TextCompletion}}},
        202: {"description": "Still running: the job", "content": {"application/json": {"model": JobView}}},
    },
)
def completions(body: CompletionRequest, prefer: PreferHeader = None) -> Response[Any]:
    principal = caller(router, Scope.INFERENCE)
    service = services(router).inference
    job = service.submit(principal.tenant_id, body)
    waited = wait_seconds(prefer)
    return _answer(service.wait(principal.tenant_id, job.job_id, waited) if waited else job, waited)


@router.get("/v1/jobs/<job_id>", summary="Status and result of an inference request", tags=["inference"])
def get_job(job_id: Annotated[str, Path(pattern=r"^job_[0-9a-f]{24}$")]) -> JobView:
    principal = caller(router, Scope.INFERENCE)
    return JobView.of(services(router).inference.get(principal.tenant_id, job_id))
