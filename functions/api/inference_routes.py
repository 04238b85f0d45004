"""OpenAI's chat and text completions and the Responses API: answered when the job finishes, as
JSON or a stream; a retryable 503 when it is not done within the wait; 202 and the job on request."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseContentSchema

from api.caller import caller, services
from stratus_core.answers import SSE_CONTENT_TYPE, chat_stream, completion_stream, response_object, response_stream
from stratus_core.errors import NotServed
from stratus_core.http.errors import http_error, job_failure, rate_limit_headers
from stratus_core.inference import MAX_WAIT_SECONDS, retry_identity
from stratus_core.jobs import JOB_ID_PATTERN, Job, JobList, JobStatus, JobView
from stratus_core.keys import Scope
from stratus_core.openai_objects import ChatCompletion, TextCompletion
from stratus_core.openai_responses import ResponsesRequest
from stratus_core.openai_types import ChatCompletionRequest, CompletionRequest, InferenceRequest

router = Router()

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)
_RESPOND_ASYNC = re.compile(r"(?:^|[,;\s])respond-async(?:$|[,;\s])", re.IGNORECASE)

PreferHeader = Annotated[
    str | None,
    Header(
        alias="prefer",
        description="`wait=N` (0-25 s; default `DefaultWaitSeconds`): how long to wait for the answer; "
        "`respond-async` (RFC 7240): answer 202 with the job instead of a retryable 503 when it is not done.",
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(alias="idempotency-key", description="A retry with the same key attaches to the first request's job."),
]
_STREAMED: dict[str, OpenAPIResponseContentSchema] = {"text/event-stream": {"schema": {"type": "string"}}}
_NOT_READY: OpenAPIResponse = {"description": "Not done within the wait (described with the errors below)"}


@dataclass(frozen=True)
class Preference:
    wait: int
    respond_async: bool


def preference(prefer: str | None, default_wait: int) -> Preference:
    """RFC 7240's `wait` and `respond-async`; `respond-async` alone waits for nothing."""
    respond_async = bool(_RESPOND_ASYNC.search(prefer or ""))
    match = _WAIT.search(prefer or "")
    if match:
        return Preference(min(int(match.group(1)), MAX_WAIT_SECONDS), respond_async)
    return Preference(0 if respond_async else default_wait, respond_async)


def _complete(route: str, request: InferenceRequest, render: Callable[[Job], Response[Any]]) -> Response[Any]:
    """Admit (or attach a retry to) one request, wait for it, and answer in its client's terms."""
    principal = caller(router, Scope.INFERENCE)
    svc = services(router)
    event = router.current_event
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    retry = retry_identity(principal.tenant_id, principal.key_id, route, event.decoded_body or "", headers)
    # a flex request waits for a warm endpoint, minutes or more: waiting inside the function would
    # only bill Lambda time, so it waits only when its client asks (`Prefer: wait=N`)
    default_wait = svc.settings.default_wait_seconds if request.lane == "interactive" else 0
    prefer = preference(headers.get("prefer"), default_wait)
    submitted = svc.inference.submit(principal.tenant_id, request, retry)
    job = submitted.job
    if prefer.wait and not job.status.is_terminal:
        job = svc.inference.wait(principal.tenant_id, job.job_id, prefer.wait)
    answer_headers = {"x-stratus-job-id": job.job_id, "Preference-Applied": f"wait={prefer.wait}"}
    if submitted.window is not None:
        answer_headers.update(rate_limit_headers(submitted.window))
    if job.status is JobStatus.COMPLETED and job.result is not None:
        answer = render(job)
        answer.headers.update(answer_headers)
        return answer
    if job.status.is_terminal:
        failure = job_failure(
            job.error.code if job.error else job.status.value,
            job.error.message if job.error else f"the request was {job.status.value}",
        )
        if retry is not None and retry.exclusive:  # the same key would only find this failure again
            answer_headers["x-should-retry"] = "false"
        return Response(failure.status, content_types.APPLICATION_JSON, failure.body.model_dump(), answer_headers)
    if prefer.respond_async:
        answer_headers.update({"Location": f"/v1/jobs/{job.job_id}", "Preference-Applied": "respond-async"})
        return Response(
            HTTPStatus.ACCEPTED, content_types.APPLICATION_JSON, JobView.of(job).model_dump(mode="json"), answer_headers
        )
    not_ready = http_error(svc.inference.not_ready(job))
    return Response(
        not_ready.status,
        content_types.APPLICATION_JSON,
        not_ready.body.model_dump(),
        {**answer_headers, **not_ready.headers},
    )


def _json(job: Job) -> Response[Any]:
    return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, body=job.result, headers={})


def _sse(body: str) -> Response[Any]:
    return Response(HTTPStatus.OK, SSE_CONTENT_TYPE, body=body, headers={"Cache-Control": "no-cache"})


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (JSON, or server-sent events with `stream`)",
    tags=["inference"],
    responses={
        200: {
            "description": "The completion; with `stream: true`, OpenAI's chunks as server-sent events (on AWS "
            "delivered together when the job completes: HTTP APIs buffer)",
            "content": {"application/json": {"model": ChatCompletion}, **_STREAMED},
        },
        202: {
            "description": "With `Prefer: respond-async`: the job",
            "content": {"application/json": {"model": JobView}},
        },
        503: _NOT_READY,
    },
)
def chat_completions(
    body: ChatCompletionRequest, prefer: PreferHeader = None, key: IdempotencyHeader = None
) -> Response[Any]:
    def render(job: Job) -> Response[Any]:
        return _sse(chat_stream(job.result or {}, body.include_usage)) if body.stream else _json(job)

    return _complete("/v1/chat/completions", body, render)


@router.post(
    "/v1/completions",
    summary="Create a text completion (JSON, or server-sent events with `stream`)",
    tags=["inference"],
    responses={
        200: {
            "description": "The completion; with `stream: true`, server-sent events (delivered when the job completes)",
            "content": {"application/json": {"model": TextCompletion}, **_STREAMED},
        },
        202: {
            "description": "With `Prefer: respond-async`: the job",
            "content": {"application/json": {"model": JobView}},
        },
        503: _NOT_READY,
    },
)
def completions(body: CompletionRequest, prefer: PreferHeader = None, key: IdempotencyHeader = None) -> Response[Any]:
    def render(job: Job) -> Response[Any]:
        return _sse(completion_stream(job.result or {}, body.include_usage)) if body.stream else _json(job)

    return _complete("/v1/completions", body, render)


@router.post(
    "/v1/responses",
    summary="Create a response (the Responses API's text form; nothing is stored)",
    tags=["inference"],
    responses={
        200: {
            "description": "The response; with `stream: true`, its events (delivered when the job completes)",
            "content": {"application/json": {"schema": {"type": "object"}}, **_STREAMED},
        },
        202: {
            "description": "With `Prefer: respond-async`: the job",
            "content": {"application/json": {"model": JobView}},
        },
        503: _NOT_READY,
    },
)
def responses(body: ResponsesRequest, prefer: PreferHeader = None, key: IdempotencyHeader = None) -> Response[Any]:
    def render(job: Job) -> Response[Any]:
        response = response_object(job.result or {}, body.echoed(), job.job_id)
        if body.stream:
            return _sse(response_stream(response))
        return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, body=response, headers={})

    return _complete("/v1/responses", body.as_chat(), render)


@router.post("/v1/embeddings", summary="Not served: this deployment serves generation only", tags=["inference"])
def embeddings() -> None:
    caller(router, Scope.INFERENCE)
    raise NotServed(
        "embeddings are not served by this deployment: Stratus serves /v1/chat/completions, /v1/completions "
        "and /v1/responses",
        code="embeddings_not_supported",
    )


@router.get("/v1/jobs", summary="The caller's recent inference requests, newest first", tags=["inference"])
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=JOB_ID_PATTERN, description="The previous page's `last_id`")] = None,
) -> JobList:
    """Interactive and flex requests; a batch's lines are seen through their batch."""
    principal = caller(router, Scope.INFERENCE)
    return services(router).inference.recent(principal.tenant_id, limit, after)


@router.get("/v1/jobs/<job_id>", summary="Status and result of an inference request", tags=["inference"])
def get_job(job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)]) -> JobView:
    principal = caller(router, Scope.INFERENCE)
    return JobView.of(services(router).inference.get(principal.tenant_id, job_id))
