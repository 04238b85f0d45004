"""A pytest plugin that records, for each Stratus function, the AWS calls its code makes.

Always loaded (`tests/conftest.py`), so a whole test run records as it goes and the least-privilege
check (run last) reads what the session recorded; with `STRATUS_IAM_RECORD=<file>` the calls are
also written to that file at the end (the check runs the integration suite that way, in a separate
process, when the session did not run all of it). Every boto3 call (and every
presigned URL, which the caller's role must also allow) is attributed to the function whose code
is on the call stack (`functions/<package>/…`), turned into the IAM action and the resource it
needs, and written to the file at the end of the session. Calls made by test set-up code are
not attributed to any function and are left out.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import botocore.signers
import pytest
from botocore.client import BaseClient

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
PACKAGES = {
    "authorizer",
    "api",
    "batch",
    "dispatcher",
    "results",
    "request_failures",
    "sweeper",
    "scheduler",
    "billing",
}
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
S3_ACTIONS = {
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
}
MISS_TOLERANT_READS = {"GetObject", "HeadObject"}
"""Every object read in Stratus treats a missing object as an answer (`None`: not written yet, a 404,
a job that failed). S3 gives that answer only to a caller that may list the bucket: "If you have
the s3:ListBucket permission on the bucket, Amazon S3 returns an HTTP status code 404 (Not Found)
error. If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403
(Access Denied) error." (GetObject and HeadObject API reference, Permissions). moto answers 404
either way, so this rule stands in for S3: such a read needs `s3:ListBucket` on the bucket for the
key's prefix (`s3:prefix`, which S3 sets to the object's key when it makes this decision)."""
SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    "DeleteMessageBatch": "DeleteMessage",
}

recorded: dict[str, set[tuple[str, str]]] = defaultdict(set)
INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
progress: dict[str, Any] = {"integration_files": set(), "integration_failed": 0, "integration_passed": 0}


def integration_suite_recorded() -> bool:
    """Whether this session ran every integration test file and none failed: its recording is whole."""
    every = {path.name for path in INTEGRATION.glob("test_*.py")}
    ran = progress["integration_files"]
    return bool(every) and ran >= every and progress["integration_failed"] == 0 and progress["integration_passed"] > 0


def logical(physical: str) -> str:
    """`test-TenantsTable` → `TenantsTable`; bucket names are lower case: `test-databucket` → `DataBucket`."""
    name = physical.rsplit("/", 1)[-1].split("-", 1)[-1]
    return "DataBucket" if name == "databucket" else name


def calling_package() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(FUNCTIONS_DIR):
            package = path.relative_to(FUNCTIONS_DIR).parts[0]
            if package in PACKAGES:
                return package
        frame = frame.f_back  # type: ignore[assignment]
    return None


def needs(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (IAM action, resource) pairs one call needs; resources by logical ID (+ index or key prefix)."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            pairs = []
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                pairs.append((f"dynamodb:{TRANSACT_ACTIONS[kind]}", logical(body["TableName"])))
            return pairs
        resource = logical(params["TableName"])
        if params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", resource)]
    if service == "s3":
        bucket = logical(params["Bucket"])
        if operation == "ListObjectsV2" and params.get("Prefix"):  # a listing scoped by s3:prefix
            return [("s3:ListBucket", f"{bucket}?s3:prefix={params['Prefix'].split('/', 1)[0]}/*")]
        if "Key" not in params:
            return [(S3_ACTIONS[operation], bucket)]
        prefix = params["Key"].split("/", 1)[0] + "/*"
        pairs = [(S3_ACTIONS[operation], f"{bucket}/{prefix}")]
        if operation in MISS_TOLERANT_READS:
            pairs.append(("s3:ListBucket", f"{bucket}?s3:prefix={prefix}"))
        return pairs
    if service == "sqs":
        return [(f"sqs:{SQS_ACTIONS.get(operation, operation)}", logical(params["QueueUrl"]))]
    if service in ("sagemaker-runtime", "sagemaker"):
        return [(f"sagemaker:{operation}", "Endpoint")]
    if service == "application-autoscaling" and operation == "RegisterScalableTarget":
        # and what Application Auto Scaling requires of the caller for a SageMaker variant
        return [
            ("application-autoscaling:RegisterScalableTarget", "*"),
            ("sagemaker:DescribeEndpoint", "Endpoint"),
            ("sagemaker:UpdateEndpointWeightsAndCapacities", "Endpoint"),
        ]
    return [(f"{service}:{operation}", "?")]


_original_call = BaseClient._make_api_call
_original_presign = botocore.signers.generate_presigned_url


def _recording_call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
    package = calling_package()
    if package is not None:
        recorded[package].update(needs(self.meta.service_model.service_name, operation, params))
    return _original_call(self, operation, params)


def _recording_presign(self: BaseClient, ClientMethod: str, Params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    package = calling_package()
    if package is not None:
        operation = self.meta.method_to_api_mapping[ClientMethod]
        recorded[package].update(needs(self.meta.service_model.service_name, operation, Params or {}))
    return _original_presign(self, ClientMethod, Params, **kwargs)


def _record_fake_endpoint() -> None:
    """The tests' fake SageMaker endpoint stands in for the `sagemaker-runtime` client: record its calls too."""
    from tests.fakes import FakeAsyncEndpoint

    original = FakeAsyncEndpoint.invoke_endpoint_async

    def invoke(self: FakeAsyncEndpoint, **params: Any) -> Any:
        package = calling_package()
        if package is not None:
            recorded[package].update(needs("sagemaker-runtime", "InvokeEndpointAsync", params))
        return original(self, **params)

    FakeAsyncEndpoint.invoke_endpoint_async = invoke  # type: ignore[method-assign]

    describe, register = FakeAsyncEndpoint.describe_endpoint, FakeAsyncEndpoint.register_scalable_target

    def describe_endpoint(self: FakeAsyncEndpoint, **params: Any) -> Any:
        package = calling_package()
        if package is not None:
            recorded[package].update(needs("sagemaker", "DescribeEndpoint", params))
        return describe(self, **params)

    def register_scalable_target(self: FakeAsyncEndpoint, **params: Any) -> Any:
        package = calling_package()
        if package is not None:
            recorded[package].update(needs("application-autoscaling", "RegisterScalableTarget", params))
        return register(self, **params)

    FakeAsyncEndpoint.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
    FakeAsyncEndpoint.register_scalable_target = register_scalable_target  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    progress["rootpath"] = config.rootpath
    _record_fake_endpoint()
    BaseClient._make_api_call = _recording_call  # type: ignore[method-assign]
    botocore.signers.generate_presigned_url = _recording_presign  # clients created from now on get it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Note which integration files this session runs, and run the IAM check after everything else."""
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == INTEGRATION:
            progress["integration_files"].add(path.name)
    items.sort(key=lambda item: Path(str(item.fspath)).parent.name == "iam")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # a report's fspath is relative to the rootdir (an item's is absolute)
    if (progress["rootpath"] / report.fspath).resolve().parent == INTEGRATION and report.when == "call":
        progress["integration_passed" if report.passed else "integration_failed"] += 0 if report.skipped else 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("STRATUS_IAM_RECORD")
    if target:
        data = {package: sorted(map(list, pairs)) for package, pairs in sorted(recorded.items())}
        Path(target).write_text(json.dumps({"exitstatus": int(exitstatus), "calls": data}, indent=1))
