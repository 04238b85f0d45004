"""Default wiring: domain services over the DynamoDB/S3 adapters named by the environment.

Built lazily and once per process, like the boto3 clients beneath them. Each factory imports
its own modules, so a function pays at cold start only for the services it uses (the
authorizer never imports admission or billing).
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from stratus_core.config import get_settings

if TYPE_CHECKING:
    from stratus_core.admission import AdmissionService
    from stratus_core.batches import BatchService
    from stratus_core.billing import BillingService
    from stratus_core.dispatch import Dispatcher
    from stratus_core.dynamo.job_store import DynamoJobStore
    from stratus_core.dynamo.ledger import DynamoLedger
    from stratus_core.dynamo.tenant_store import DynamoTenantStore
    from stratus_core.files import FileService
    from stratus_core.inference import InferenceService
    from stratus_core.keys import KeyService
    from stratus_core.pricing import PriceCatalog
    from stratus_core.results import ResultsProcessor
    from stratus_core.s3_archive import S3InvoiceArchive
    from stratus_core.s3_store import S3Objects
    from stratus_core.tenants import TenantService
    from stratus_core.usage import UsageService


@lru_cache(maxsize=1)
def tenant_store() -> DynamoTenantStore:
    from stratus_core.dynamo.tenant_store import DynamoTenantStore

    return DynamoTenantStore(get_settings().tenants_table)


@lru_cache(maxsize=1)
def tenants() -> TenantService:
    from stratus_core.tenants import TenantService

    return TenantService(tenant_store())


@lru_cache(maxsize=1)
def keys() -> KeyService:
    from stratus_core.dynamo.key_store import DynamoKeyStore
    from stratus_core.keys import KeyService

    return KeyService(DynamoKeyStore(get_settings().api_keys_table), tenant_store())


def catalog() -> PriceCatalog:
    from stratus_core.pricing import load_catalog

    return load_catalog()


@lru_cache(maxsize=1)
def admission() -> AdmissionService:
    from stratus_core.admission import AdmissionService
    from stratus_core.dynamo.admission_store import DynamoAdmissionStore

    settings = get_settings()
    return AdmissionService(
        tenant_store(),
        DynamoAdmissionStore(settings.usage_table, settings.tenants_table),
        catalog(),
        attempts=settings.transaction_attempts,
        retention_days=settings.reservation_retention_days,
    )


@lru_cache(maxsize=1)
def usage() -> UsageService:
    from stratus_core.dynamo.usage_store import DynamoUsageStore
    from stratus_core.usage import UsageService

    return UsageService(DynamoUsageStore(get_settings().usage_table), catalog().currency)


@lru_cache(maxsize=1)
def billing() -> BillingService:
    from stratus_core.billing import BillingService
    from stratus_core.dynamo.usage_store import DynamoUsageStore

    return BillingService(tenant_store(), DynamoUsageStore(get_settings().usage_table), catalog().currency)


def invoice_archive() -> S3InvoiceArchive:
    from stratus_core.s3_archive import S3InvoiceArchive

    return S3InvoiceArchive(get_settings().data_bucket)


@lru_cache(maxsize=1)
def job_store() -> DynamoJobStore:
    from stratus_core.dynamo.job_store import DynamoJobStore

    settings = get_settings()
    return DynamoJobStore(
        settings.jobs_table,
        settings.job_retention_days * 86_400,
        timedelta(seconds=settings.result_check_seconds),
    )


@lru_cache(maxsize=1)
def ledger() -> DynamoLedger:
    from stratus_core.dynamo.admission_store import DynamoAdmissionStore
    from stratus_core.dynamo.ledger import DynamoLedger

    settings = get_settings()
    reservations = DynamoAdmissionStore(settings.usage_table, settings.tenants_table)
    return DynamoLedger(job_store(), reservations, catalog(), settings.batches_table or None)


@lru_cache(maxsize=1)
def objects() -> S3Objects:
    from stratus_core.s3_store import S3Objects

    return S3Objects(get_settings().data_bucket)


@lru_cache(maxsize=1)
def inference() -> InferenceService:
    from stratus_core.inference import InferenceService
    from stratus_core.messaging import SqsQueue

    settings = get_settings()
    return InferenceService(
        admission(),
        job_store(),
        ledger(),
        objects(),
        SqsQueue(settings.requests_queue_url),
        request_ttl_seconds=settings.request_ttl_seconds,
    )


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    from stratus_core.dispatch import Dispatcher
    from stratus_core.endpoint import AsyncEndpoint

    settings = get_settings()
    endpoint = AsyncEndpoint(settings.endpoint_name, settings.request_ttl_seconds, settings.invocation_timeout_seconds)
    return Dispatcher(
        job_store(),
        objects(),
        objects(),
        endpoint,
        ledger(),
        max_pack_size=settings.max_pack_size,
        on_batch_job_finished=batches().maybe_finalize,
    )


@lru_cache(maxsize=1)
def results() -> ResultsProcessor:
    from stratus_core.results import ResultsProcessor

    return ResultsProcessor(job_store(), ledger(), objects(), on_batch_job_finished=batches().maybe_finalize)


@lru_cache(maxsize=1)
def files() -> FileService:
    from stratus_core.dynamo.file_batch_store import DynamoFileStore
    from stratus_core.files import FileService

    return FileService(DynamoFileStore(get_settings().files_table), objects())


@lru_cache(maxsize=1)
def batches() -> BatchService:
    from stratus_core.batches import BatchService
    from stratus_core.dynamo.file_batch_store import DynamoBatchStore
    from stratus_core.messaging import SqsQueue

    settings = get_settings()
    return BatchService(
        DynamoBatchStore(settings.batches_table),
        files(),
        job_store(),
        ledger(),
        admission(),
        objects(),
        SqsQueue(settings.batch_queue_url),
        SqsQueue(settings.batch_requests_queue_url),
    )


def reset() -> None:
    """Forget every service, setting and client (tests and the local cloud switch environments)."""
    from stratus_core import aws, config, pricing

    cached_factories = (
        tenant_store,
        tenants,
        keys,
        admission,
        usage,
        billing,
        job_store,
        ledger,
        objects,
        inference,
        dispatcher,
        results,
        pricing.load_catalog,
    )
    for cached in cached_factories:
        cached.cache_clear()
    config.reset_settings()
    aws.reset_clients()
