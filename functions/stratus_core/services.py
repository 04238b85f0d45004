"""The services of one process, assembled over the AWS adapters the settings name.

Each function's `app.py` makes one `Services()` at import time and hands its services to the
domain; nothing in the domain looks services up. Construction is free: the settings are read from
the environment, and each service is built (with the modules it needs imported) on first use, so
a function pays at cold start only for what it uses (the authorizer never imports admission or
billing) and moto is active before any client exists in the tests. `reset()` forgets everything
at once (the tests and the local cloud switch environments).

| service | used by |
| --- | --- |
| `keys`, `tenants` | authorizer, API (admin routes) |
| `limits` | API (`GET /v1/limits`) |
| `overview` | API (the admin lists across tenants: tenants, batches, usage) |
| `inference` (`intake` → `admission`, `settlement`) | API (completions) |
| `batches`, `files` | API (files and batches routes) |
| `batch_worker`, `submissions` | batch function |
| `dispatcher` | dispatcher function |
| `results` | results function |
| `settlement` | request-failures function, and every path above that ends a job |
| `sweeper` | sweeper function |
| `scheduler` | scheduler function |
| `scheduler_memory` | scheduler function, dispatcher function (when it last sent work), API (`endpoint_history`) |
| `run_history` | scheduler function (records its runs), API (`endpoint_history`: `GET /admin/endpoint`) |
| `billing`, `invoice_archive`, `usage` | billing function, API (usage and invoices) |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from stratus_core.clock import utcnow
from stratus_core.settings import Settings

if TYPE_CHECKING:
    from stratus_core.adapters.dynamo.admission_store import DynamoAdmissionStore
    from stratus_core.adapters.dynamo.batch_store import DynamoBatchStore
    from stratus_core.adapters.dynamo.job_store import DynamoJobStore
    from stratus_core.adapters.dynamo.run_history import DynamoRunHistory
    from stratus_core.adapters.dynamo.scheduler_store import DynamoSchedulerMemory
    from stratus_core.adapters.dynamo.tenant_store import DynamoTenantStore
    from stratus_core.adapters.s3_invoices import S3InvoiceArchive
    from stratus_core.adapters.s3_objects import S3Objects
    from stratus_core.adapters.sqs import SqsQueue
    from stratus_core.admission import AdmissionService
    from stratus_core.batches.progress import BatchProgress
    from stratus_core.batches.service import BatchService
    from stratus_core.batches.worker import BatchWorker
    from stratus_core.billing import BillingService
    from stratus_core.creates import RetriedCreates
    from stratus_core.dispatch import Dispatcher
    from stratus_core.endpoint_history import EndpointHistory
    from stratus_core.endpoint_state import EndpointState
    from stratus_core.files import FileService
    from stratus_core.inference import InferenceService
    from stratus_core.intake import JobIntake
    from stratus_core.jobs import Lane, RequestQueue
    from stratus_core.keys import KeyService
    from stratus_core.limits import LimitsService
    from stratus_core.overview import Overview
    from stratus_core.pricing import PriceCatalog
    from stratus_core.results import ResultsProcessor
    from stratus_core.scheduler import Scheduler
    from stratus_core.settlement import Settlement
    from stratus_core.submissions import SubmissionService
    from stratus_core.sweep import Sweeper
    from stratus_core.tenants import TenantService
    from stratus_core.usage import UsageService


class Services:
    def __init__(self, settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._given = settings
        self._clock = clock

    def reset(self) -> None:
        """Forget every service and the settings: the next use builds them again from the environment."""
        given, clock = self._given, self._clock
        self.__dict__.clear()
        self._given, self._clock = given, clock

    @cached_property
    def settings(self) -> Settings:
        return self._given or Settings.from_environment()

    # -- stores ------------------------------------------------------------------------------------
    @cached_property
    def tenant_store(self) -> DynamoTenantStore:
        from stratus_core.adapters.dynamo.tenant_store import DynamoTenantStore

        return DynamoTenantStore(self.settings.tenants_table)

    @cached_property
    def admission_store(self) -> DynamoAdmissionStore:
        from stratus_core.adapters.dynamo.admission_store import DynamoAdmissionStore

        return DynamoAdmissionStore(self.settings.usage_table, self.settings.tenants_table)

    @cached_property
    def job_store(self) -> DynamoJobStore:
        from stratus_core.adapters.dynamo.job_store import DynamoJobStore

        settings = self.settings
        return DynamoJobStore(
            settings.jobs_table, settings.job_retention_days * 86_400, timedelta(seconds=settings.result_check_seconds)
        )

    @cached_property
    def batch_store(self) -> DynamoBatchStore:
        from stratus_core.adapters.dynamo.batch_store import DynamoBatchStore

        return DynamoBatchStore(self.settings.batches_table)

    @cached_property
    def objects(self) -> S3Objects:
        from stratus_core.adapters.s3_objects import S3Objects

        return S3Objects(self.settings.data_bucket)

    @cached_property
    def invoice_archive(self) -> S3InvoiceArchive:
        from stratus_core.adapters.s3_invoices import S3InvoiceArchive

        return S3InvoiceArchive(self.settings.data_bucket)

    @cached_property
    def catalog(self) -> PriceCatalog:
        from stratus_core.pricing import load_catalog

        return load_catalog(self.settings.price_catalog_json)

    # -- the control plane -------------------------------------------------------------------------
    @cached_property
    def tenants(self) -> TenantService:
        from stratus_core.tenants import TenantService

        return TenantService(self.tenant_store, self._clock)

    @cached_property
    def creates(self) -> RetriedCreates:
        from stratus_core.creates import RetriedCreates

        return RetriedCreates(self.admission_store, self._clock)

    @cached_property
    def keys(self) -> KeyService:
        from stratus_core.adapters.dynamo.key_store import DynamoKeyStore
        from stratus_core.keys import KeyService

        return KeyService(DynamoKeyStore(self.settings.api_keys_table), self.tenant_store)

    @cached_property
    def usage(self) -> UsageService:
        from stratus_core.adapters.dynamo.usage_store import DynamoUsageStore
        from stratus_core.usage import UsageService

        return UsageService(
            DynamoUsageStore(self.settings.usage_table, self.settings.tenants_table), self.catalog.currency
        )

    @cached_property
    def limits(self) -> LimitsService:
        from stratus_core.limits import LimitsService

        return LimitsService(self.tenant_store, self._clock)

    @cached_property
    def overview(self) -> Overview:
        from stratus_core.overview import Overview

        return Overview(self.tenants, self.usage, self.batch_store, self._clock)

    @cached_property
    def billing(self) -> BillingService:
        from stratus_core.adapters.dynamo.usage_store import DynamoUsageStore
        from stratus_core.billing import BillingService

        usage = DynamoUsageStore(self.settings.usage_table, self.settings.tenants_table)
        return BillingService(self.tenant_store, usage, self.admission_store, self.catalog.currency, clock=self._clock)

    # -- admission, jobs and their end -------------------------------------------------------------
    @cached_property
    def admission(self) -> AdmissionService:
        from stratus_core.admission import AdmissionService

        return AdmissionService(
            self.tenant_store,
            self.admission_store,
            self.catalog,
            clock=self._clock,
            attempts=self.settings.transaction_attempts,
            retention_days=self.settings.reservation_retention_days,
        )

    @cached_property
    def settlement(self) -> Settlement:
        from stratus_core.adapters.dynamo.ledger import DynamoLedger
        from stratus_core.settlement import Settlement

        ledger = DynamoLedger(self.job_store, self.admission_store, self.settings.batches_table)
        return Settlement(
            self.admission_store,
            ledger,
            self.catalog,
            batches=self.batch_progress,
            jobs=self.job_store,
            clock=self._clock,
        )

    @cached_property
    def intake(self) -> JobIntake:
        from stratus_core.adapters.sqs import SqsQueue
        from stratus_core.intake import JobIntake

        # deferrable lanes have no queue here: their jobs are held until the scheduler lets them go
        queues: dict[Lane, RequestQueue] = {"interactive": SqsQueue(self.settings.requests_queue_url)}
        return JobIntake(
            self.admission,
            self.job_store,
            self.objects,
            queues,
            self.settlement,
            request_ttl_seconds=self.settings.request_ttl_seconds,
            inline_body_bytes=self.settings.inline_body_bytes,
            clock=self._clock,
        )

    @cached_property
    def endpoint_state(self) -> EndpointState:
        from stratus_core.adapters.sagemaker import SageMakerEndpointState

        return SageMakerEndpointState(self.settings.endpoint_name)

    @cached_property
    def inference(self) -> InferenceService:
        from stratus_core.inference import InferenceService

        return InferenceService(
            self.intake,
            self.job_store,
            self.admission,
            self.endpoint_state,
            expected_cold_start_seconds=self.settings.expected_cold_start_seconds,
            flex_window_seconds=self.settings.flex_window_minutes * 60,
            max_model_len=self.settings.max_model_len,
            clock=self._clock,
        )

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from stratus_core.adapters.sagemaker import AsyncEndpoint
        from stratus_core.dispatch import Dispatcher

        settings = self.settings
        endpoint = AsyncEndpoint(
            settings.endpoint_name, settings.request_ttl_seconds, settings.invocation_timeout_seconds
        )
        return Dispatcher(
            self.job_store,
            self.objects,
            self.objects,
            endpoint,
            self.settlement,
            max_pack_size=settings.max_pack_size,
            work_sent=self.scheduler_memory.work_sent,
            clock=self._clock,
        )

    @cached_property
    def scheduler_memory(self) -> DynamoSchedulerMemory:
        from stratus_core.adapters.dynamo.scheduler_store import DynamoSchedulerMemory

        return DynamoSchedulerMemory(self.settings.scheduler_table, self.settings.endpoint_name)

    @cached_property
    def run_history(self) -> DynamoRunHistory:
        from stratus_core.adapters.dynamo.run_history import DynamoRunHistory

        return DynamoRunHistory(self.settings.usage_table, self.settings.endpoint_name)

    @cached_property
    def endpoint_history(self) -> EndpointHistory:
        from stratus_core.endpoint_history import EndpointHistory

        return EndpointHistory(self.run_history, self.scheduler_memory, self.settings.endpoint_name, self._clock)

    @cached_property
    def scheduler(self) -> Scheduler:
        from stratus_core.adapters.autoscaling import ScalableTargetCapacity
        from stratus_core.adapters.sagemaker import SageMakerEndpointState
        from stratus_core.adapters.sqs import SqsQueue
        from stratus_core.scheduler import Scheduler
        from stratus_core.scheduling import SchedulerConfig

        settings = self.settings
        config = SchedulerConfig(
            instance_jobs_per_s=settings.instance_requests_per_second,
            max_instances=settings.max_instance_count,
            slots=settings.max_concurrent_invocations_per_instance,
            startup_s=settings.expected_cold_start_seconds,
            idle_scale_in_s=settings.idle_scale_in_minutes * 60,
            warm_window_s=settings.warm_window_minutes * 60,
            deadline_margin_s=settings.deadline_margin_minutes * 60,
        )
        released = SqsQueue(settings.batch_requests_queue_url)
        return Scheduler(
            self.job_store,
            released,
            SqsQueue(settings.requests_queue_url),
            released,
            SageMakerEndpointState(settings.endpoint_name, ttl_seconds=0),
            ScalableTargetCapacity(settings.endpoint_name) if settings.scheduler_sets_capacity else None,
            self.scheduler_memory,
            config,
            clock=self._clock,
            history=self.run_history,
        )

    @cached_property
    def results(self) -> ResultsProcessor:
        from stratus_core.results import ResultsProcessor

        return ResultsProcessor(self.job_store, self.settlement, self.objects)

    @cached_property
    def sweeper(self) -> Sweeper:
        from stratus_core.sweep import Sweeper

        grace = timedelta(seconds=self.settings.orphan_grace_seconds)
        return Sweeper(
            self.job_store,
            self.results,
            self.objects,
            self.settlement,
            orphan_grace=grace,
            usage_roll=self.admission_store.roll_usage,
            clock=self._clock,
        )

    # -- files and batches -------------------------------------------------------------------------
    @cached_property
    def files(self) -> FileService:
        from stratus_core.adapters.dynamo.file_store import DynamoFileStore
        from stratus_core.files import FileService

        return FileService(DynamoFileStore(self.settings.files_table), self.objects, clock=self._clock)

    @cached_property
    def batch_queue(self) -> SqsQueue:
        from stratus_core.adapters.sqs import SqsQueue

        return SqsQueue(self.settings.batch_queue_url)

    @cached_property
    def batches(self) -> BatchService:
        from stratus_core.batches.service import BatchService

        return BatchService(self.batch_store, self.files, self.batch_queue, clock=self._clock)

    @cached_property
    def batch_progress(self) -> BatchProgress:
        from stratus_core.batches.progress import BatchProgress

        return BatchProgress(self.batch_store, self.batch_queue)

    @cached_property
    def batch_worker(self) -> BatchWorker:
        from stratus_core.batches.worker import BatchWorker

        return BatchWorker(
            self.batches,
            self.batch_store,
            self.files,
            self.job_store,
            self.intake,
            self.settlement,
            self.batch_progress,
            clock=self._clock,
            chunk_lines=self.settings.max_pack_size,
            packs=self.objects,
        )

    @cached_property
    def submissions(self) -> SubmissionService:
        from stratus_core.submissions import SubmissionService

        return SubmissionService(self.tenants, self.files, self.batches, self.objects)
