"""The whole path on one machine: moto, the template's resources, the real handlers behind an
HTTP gateway, Lambda-like pollers, the scheduled sweeper and scheduler, and a scale-to-zero async
endpoint (which, with the template's default `Scaling=Scheduler`, the scheduler function scales)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gpu_jobs.artifact import read_manifest
from stratus.localcloud import state
from stratus.localcloud.endpoint import LocalAsyncEndpoint, free_port
from stratus.localcloud.faults import FaultLayer, FaultRates
from stratus.localcloud.functions import handler, reset_services, schedules, sqs_sources
from stratus.localcloud.gateway import HttpApiGateway, LocalContext
from stratus.localcloud.moto_server import LocalMotoServer
from stratus.localcloud.resources import Created, create_all
from stratus.localcloud.sqs_source import SqsEventSource
from stratus.template import function_environment, load_template

logger = logging.getLogger("local.cloud")

# the functions a fault run crashes after their writes (a poller's handler → the fault's name)
CRASHABLE = {"DispatcherFunction": "dispatcher_crash", "ResultsFunction": "results_crash"}


@dataclass
class LocalCloudConfig:
    model_dir: Path
    port: int = 8000
    idle_seconds: float = 60
    sweep_seconds: float = 30
    scheduler_seconds: float = 5  # the scheduler function's rate (a minute on AWS: sooner here, for a laptop)
    authorizer_cache_seconds: float = 30
    model_threads: int = 2  # the model server's OpenMP threads
    engine: str = "vllm"  # the model server: vLLM's CPU build, or "echo" (no model)
    admin_key: str | None = None
    function_log_level: str | None = None  # overrides the template's LogLevel for the handlers
    state_dir: Path | None = None  # keep tables, buckets and queues here between runs (None: in memory only)
    fresh: bool = False  # throw away what state_dir holds before starting
    faults: FaultRates | None = None  # inject these faults (see faults.py); None: none
    fault_seed: int = 0
    fault_report: Path | None = None  # the faults that fired, as JSON, written at stop
    visibility_timeout: int | None = None  # every queue's (the template's if None): redeliveries come sooner
    endpoint_startup_seconds: float = 0  # SageMaker's provisioning time before a scale-out from zero starts the model
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides (MaxPackSize=4, …)


@dataclass
class LocalCloud:
    config: LocalCloudConfig
    admin_key: str = ""
    url: str = ""
    endpoint: LocalAsyncEndpoint | None = None
    _moto: LocalMotoServer | None = None
    _created: Created | None = None
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _faults: FaultLayer | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict)

    def start(self) -> LocalCloud:
        self._moto = LocalMotoServer()
        self._moto.start()
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self._moto.url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        template = load_template()
        created = self._created = create_all("stratus")
        self._restore_state(created)
        parameters = dict(self.config.parameters)
        # what a request waiting out a cold start is told: the emulated provisioning plus this model's load
        # (vLLM's CPU build starts in about 21 s, the echo engine in about 3: bench/RESULTS.md)
        model_load = 25 if self.config.engine == "vllm" else 6
        parameters.setdefault("ExpectedColdStartSeconds", str(int(self.config.endpoint_startup_seconds) + model_load))
        # the context window and the model's name are the artifact's, as `stratus model upload` prints them
        manifest = read_manifest(self.config.model_dir)
        parameters.setdefault("MaxModelLen", str(manifest.max_model_len))
        parameters.setdefault("ModelName", manifest.model_name)
        # the scheduler's idle scale-in is the local endpoint's idle time (in minutes, as the template has it)
        parameters.setdefault("IdleScaleInMinutes", f"{self.config.idle_seconds / 60:.6g}")
        os.environ.update(function_environment(template, created.refs, parameters))
        if self.config.parameters:
            logger.info("template parameters overridden: %s", self.config.parameters)
        if self.config.visibility_timeout is not None:
            self._set_visibility_timeouts(created, self.config.visibility_timeout)
        if self.config.faults is not None:
            self._faults = FaultLayer(self.config.faults, self.config.fault_seed, self.config.fault_report)
            logger.warning("fault injection on: %s (seed %d)", self.config.faults.describe(), self.config.fault_seed)
        if self.config.function_log_level:
            os.environ["POWERTOOLS_LOG_LEVEL"] = self.config.function_log_level
        logger.info("moto on %s; tables, queues, topics and bucket created from template.yaml", self._moto.url)

        environment = os.environ
        scheduled = environment.get("AUTO_SCALING") == "Enabled" and environment.get("SCALING") == "Scheduler"
        self.endpoint = LocalAsyncEndpoint(
            os.environ["ENDPOINT_NAME"],
            self.config.model_dir,
            created.refs["DataBucket"],
            created.refs["InferenceSuccessTopic"],
            created.refs["InferenceErrorTopic"],
            idle_seconds=self.config.idle_seconds,
            threads=self.config.model_threads,
            engine=self.config.engine,
            faults=self._faults,
            startup_seconds=self.config.endpoint_startup_seconds,
            externally_scaled=scheduled,
        )
        self.endpoint.start()
        endpoint_port = free_port()
        self._serve(self.endpoint.app(), endpoint_port)
        os.environ["SAGEMAKER_RUNTIME_ENDPOINT_URL"] = f"http://127.0.0.1:{endpoint_port}"
        os.environ["SAGEMAKER_ENDPOINT_URL"] = f"http://127.0.0.1:{endpoint_port}"  # DescribeEndpoint
        os.environ["APPLICATION_AUTOSCALING_ENDPOINT_URL"] = f"http://127.0.0.1:{endpoint_port}"  # its scalable target
        logger.info("async endpoint %s on 127.0.0.1:%d, at zero instances", self.endpoint.name, endpoint_port)

        reset_services(template)
        for source in sqs_sources(template):
            function = self._one_at_a_time(source.function, handler(template, source.function))
            crash = CRASHABLE.get(source.function)
            if self._faults is not None and crash is not None:
                function = self._faults.crashing(function, crash)
            events = SqsEventSource(
                created.refs[source.queue],
                function,
                batch_size=source.batch_size,
                batching_window=source.batching_window,
                context=LocalContext(source.function),
            )
            self._loop(f"poller-{source.function}", lambda events=events: events.poll_once()[0] > 0, 0.2)
        every = {
            "SweeperFunction": self.config.sweep_seconds,
            "SchedulerFunction": self.config.scheduler_seconds,
            "RequestFailuresFunction": self.config.sweep_seconds,  # drains the dead-letter queues
        }
        for schedule in schedules(template):
            if schedule.function in every:  # billing runs daily: on demand locally
                function = self._one_at_a_time(schedule.function, handler(template, schedule.function))
                name = schedule.function.removesuffix("Function").lower()
                self._loop(name, self._scheduled(function, name), every[schedule.function])

        if self._faults is not None:
            self._faults.poison(boto3.client("sqs"), created.refs["RequestsQueue"])
        self.admin_key = self._bootstrap()  # before the gateway opens: a first call must find the key
        if self._faults is not None and any(getattr(self.config.faults, name) for name in FaultRates.DYNAMODB):
            from stratus_core.adapters import aws

            self._faults.dynamodb.attach(aws.dynamodb())  # the functions' client (one per process)
            self._faults.dynamodb.armed = True
        gateway = HttpApiGateway(
            handler(template, "AuthorizerFunction"),
            handler(template, "ApiFunction"),
            cache_ttl_seconds=self.config.authorizer_cache_seconds,
            console=handler(template, "ConsoleFunction"),
        )
        self._serve(self._gateway_app(gateway), self.config.port)
        self.url = f"http://127.0.0.1:{self.config.port}"
        logger.info("gateway on %s (OpenAI base URL %s/v1, console %s/console/)", self.url, self.url, self.url)
        return self

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.should_exit = True
        if self.endpoint is not None:
            self.endpoint.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._faults is not None:
            self._faults.dynamodb.armed = False
            self._faults.write_report()
        if self.config.state_dir is not None and self._created is not None:
            counts = state.save(self.config.state_dir, self._created)
            logger.info("state saved to %s: %s", self.config.state_dir, counts.describe())
        if self._moto is not None:
            self._moto.stop()

    @staticmethod
    def _set_visibility_timeouts(created: Created, seconds: int) -> None:
        sqs = boto3.client("sqs")
        for logical_id, url in created.refs.items():
            if logical_id.endswith("Queue") and url.startswith("http"):
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})
        logger.info("every queue's visibility timeout set to %d s", seconds)

    def _restore_state(self, created: Created) -> None:
        directory = self.config.state_dir
        if directory is None:
            return
        if self.config.fresh and directory.exists():
            shutil.rmtree(directory)
            logger.info("--fresh: removed the state kept in %s", directory)
        counts = state.restore(directory, created)
        if counts is None:
            logger.info("no saved state in %s: starting empty (it is saved there at a clean stop)", directory)
        else:
            logger.info("state restored from %s: %s", directory, counts.describe())

    def _bootstrap(self) -> str:
        from stratus_core.errors import Conflict
        from stratus_core.keys import KeyCreate, Scope
        from stratus_core.services import Services
        from stratus_core.tenants import TenantCreate

        services = Services()
        with contextlib.suppress(Conflict):  # kept from an earlier start
            services.tenants.create(TenantCreate(tenant_id="operators", name="Operators", allowed_models=[]))
        scopes = [Scope.ADMIN, Scope.USAGE]
        if self.config.admin_key:
            return services.keys.import_key("operators", self.config.admin_key, scopes).api_key
        return services.keys.create("operators", KeyCreate(scopes=scopes)).api_key

    def _serve(self, app: Any, port: int) -> None:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        self._servers.append(server)

    def _loop(self, name: str, step: Any, pause: float) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    busy = step()
                except Exception:  # a failing poll must not kill the poller; Lambda would retry too
                    logging.getLogger(f"local.{name}").exception("poll failed")
                    busy = False
                if not busy:
                    self._stop.wait(pause)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _one_at_a_time(self, logical_id: str, function: Any) -> Any:
        """A function's handler, invoked with one event at a time, as Lambda invokes an execution
        environment (the dispatcher reads two queues: without this, both pollers would run it at once,
        sharing its module-level batch processor)."""
        lock = self._locks.setdefault(logical_id, threading.Lock())

        def invoke(event: dict[str, Any], context: Any) -> Any:
            with lock:
                return function(event, context)

        return invoke

    @staticmethod
    def _scheduled(function: Any, name: str) -> Any:
        def run() -> bool:
            function({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, LocalContext(name))
            return False

        return run

    @staticmethod
    def _gateway_app(gateway: HttpApiGateway) -> Any:
        """Every method and path (encoded newlines included) to the gateway, as API Gateway's `ANY`
        routes do; a plain ASGI callable because a routing table would answer some paths itself."""

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            request = Request(scope, receive)
            body = await request.body()
            answer = await run_in_threadpool(
                gateway.handle, request.method, request.url.path, request.url.query, dict(request.headers), body
            )
            await Response(answer.body, answer.status, headers=answer.headers)(scope, receive, send)

        return app
