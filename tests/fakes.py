"""A fake SageMaker async endpoint for tests: the same S3-in / S3-out / SNS contract, no model.

It stands in for the `sagemaker-runtime` client (moto's `invoke_endpoint_async` is a stub that
writes nowhere and notifies no one). Production code does not know it exists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError

from stratus_core.adapters.s3_objects import split_uri
from stratus_core.contract import (
    Choice,
    FunctionCall,
    InferencePack,
    JobError,
    NamedToolChoice,
    PackedRequest,
    PackResult,
    RequestResult,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
)


def echo(request: PackedRequest) -> RequestResult:
    """Deterministic 'generation': echoes the last message, counts whitespace-separated words.

    Each of the `n` choices is the same echo and is counted, as the real server counts them; with
    `logprobs` each word has log-probability 0 and its `top_logprobs` alternatives below it; a
    forced tool choice (`required` or a named function) answers with a call to that function (the
    first tool for `required`) whose arguments are `{"echo": <the text>}`.
    """
    text = (request.messages[-1].content or "") if request.messages else request.prompt or ""
    if "FAIL_ME" in text:
        return RequestResult(
            job_id=request.job_id,
            tenant_id=request.tenant_id,
            error=JobError(code="invalid_request", message="the model refused this input"),
        )
    words = ("echo: " + text).split()
    completion = words[: request.params.max_tokens]
    prompt_tokens = (
        sum(len((m.content or "").split()) + 4 for m in request.messages) if request.messages else len(words) - 1
    )
    params = request.params
    finish: Literal["stop", "length"] = "length" if len(completion) < len(words) else "stop"
    logprobs = None
    if params.logprobs:
        alternatives = [TopLogprob(token=f"alt{rank}", logprob=-float(rank)) for rank in range(1, params.top_logprobs)]
        logprobs = [
            TokenLogprob(
                token=word,
                logprob=0.0,
                top_logprobs=[TopLogprob(token=word, logprob=0.0), *alternatives][: params.top_logprobs],
            )
            for word in completion
        ]
    choices = [
        Choice(index=index, text=" ".join(completion), finish_reason=finish, logprobs=logprobs)
        for index in range(params.n)
    ]
    forced = _forced_tool(params)
    if forced is not None:
        call = ToolCall(
            id=f"call_{request.job_id[-8:]}", function=FunctionCall(name=forced, arguments=json.dumps({"echo": text}))
        )
        choices = [
            Choice(index=index, text="", finish_reason="tool_calls", tool_calls=[call]) for index in range(params.n)
        ]
    return RequestResult(
        job_id=request.job_id,
        tenant_id=request.tenant_id,
        choices=choices,
        usage=Usage.of(prompt_tokens, params.n * len(completion)),
    )


def _forced_tool(params: SamplingParams) -> str | None:
    if not params.tools or params.tool_choice in (None, "none", "auto"):
        return None
    if isinstance(params.tool_choice, NamedToolChoice):
        return params.tool_choice.function["name"]
    return params.tools[0].function.name


@dataclass
class Invocation:
    input_location: str
    inference_id: str
    output_location: str
    failure_location: str
    params: dict[str, Any]


@dataclass
class FakeAsyncEndpoint:
    bucket: str
    success_topic: str
    error_topic: str
    load_event: Callable[[str], dict[str, Any]]
    throttle_next: int = 0
    fail_packs: bool = False
    notify: bool = True
    engine: Callable[[PackedRequest], RequestResult] = echo
    pending: list[Invocation] = field(default_factory=list)
    calls: list[Invocation] = field(default_factory=list)
    # its control plane, as the scheduler sees it: instances in service, what was asked for, and
    # whether an asked-for instance comes into service at once (False: it stays starting)
    instances: int = 1
    desired: int = 1
    starts_at_once: bool = True
    capacity_calls: list[int] = field(default_factory=list)

    def describe_endpoint(self, **params: Any) -> dict[str, Any]:
        changing = self.desired != self.instances
        return {
            "EndpointName": params["EndpointName"],
            "EndpointStatus": "Updating" if changing else "InService",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "CurrentInstanceCount": self.instances,
                    "DesiredInstanceCount": self.desired,
                }
            ],
        }

    def register_scalable_target(self, **params: Any) -> dict[str, Any]:
        """Application Auto Scaling moves the desired count into [MinCapacity, MaxCapacity]."""
        self.desired = min(max(self.desired, params["MinCapacity"]), params["MaxCapacity"])
        self.capacity_calls.append(self.desired)
        if self.starts_at_once or self.desired < self.instances:
            self.instances = self.desired
        return {}

    def invoke_endpoint_async(self, **params: Any) -> dict[str, Any]:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "InvokeEndpointAsync"
            )
        name = uuid.uuid4()
        invocation = Invocation(
            input_location=params["InputLocation"],
            inference_id=params["InferenceId"],
            output_location=f"s3://{self.bucket}/outputs/{name}.out",
            failure_location=f"s3://{self.bucket}/failures/{name}.out",
            params=params,
        )
        self.pending.append(invocation)
        self.calls.append(invocation)
        return {
            "InferenceId": invocation.inference_id,
            "OutputLocation": invocation.output_location,
            "FailureLocation": invocation.failure_location,
        }

    def run_pending(self) -> list[dict[str, Any]]:
        """Run every queued invocation; returns the notifications (published unless `notify` is off)."""
        s3 = boto3.client("s3")
        notifications = []
        while self.pending:
            invocation = self.pending.pop(0)
            bucket, key = split_uri(invocation.input_location)
            pack = InferencePack.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if self.fail_packs:
                bucket, key = split_uri(invocation.failure_location)
                s3.put_object(Bucket=bucket, Key=key, Body=b"model crashed")
                notification = self.load_event("sagemaker_error")
                notification["responseParameters"]["failureLocation"] = invocation.failure_location
                topic = self.error_topic
            else:
                result = PackResult(
                    pack_id=pack.pack_id, model=pack.model, results=[self.engine(request) for request in pack.requests]
                )
                bucket, key = split_uri(invocation.output_location)
                s3.put_object(Bucket=bucket, Key=key, Body=result.model_dump_json().encode())
                notification = self.load_event("sagemaker_success")
                notification["responseParameters"]["outputLocation"] = invocation.output_location
                topic = self.success_topic
            notification["inferenceId"] = invocation.inference_id
            notification["requestParameters"]["inputLocation"] = invocation.input_location
            notification["requestParameters"]["endpointName"] = invocation.params["EndpointName"]
            notifications.append(notification)
            if self.notify:
                boto3.client("sns").publish(TopicArn=topic, Message=json.dumps(notification))
        return notifications
