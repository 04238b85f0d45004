"""OpenAI's Files and Batches APIs (the official client works unchanged)."""

from __future__ import annotations

import base64
import hashlib
import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from api.caller import caller, create_id, services
from stratus_core.batches.models import Batch, BatchCreate, BatchList, new_batch_id
from stratus_core.errors import InvalidRequest
from stratus_core.files import FileDeleted, FileList, FileObject, PresignedUpload, UploadRequest, new_file_id
from stratus_core.keys import Scope

router = Router()

FileId = Annotated[str, Path(pattern=r"^file-[0-9a-f]{24}$")]
BatchId = Annotated[str, Path(pattern=r"^batch_[0-9a-f]{24}$")]


def multipart_form(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """`multipart/form-data` → {field: (filename, bytes)}, with the standard library's MIME parser."""
    from email.parser import BytesParser  # only file uploads pay for the MIME parser
    from email.policy import HTTP

    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("upload the file as multipart/form-data with fields 'purpose' and 'file'", param="file")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


@router.post("/v1/files", summary="Upload a JSONL file (multipart: purpose=batch, file)", tags=["files"])
def upload_file() -> FileObject:
    principal = caller(router, Scope.BATCH)
    event = router.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8", errors="surrogateescape")
    form = multipart_form(body, event.headers.get("content-type", ""))
    purpose = form.get("purpose", (None, b""))[1].decode("utf-8", errors="replace").strip()
    if purpose != "batch":
        raise InvalidRequest("purpose must be 'batch'", param="purpose")
    if "file" not in form:
        raise InvalidRequest("the form has no 'file' field", param="file")
    filename, content = form["file"]
    name = filename or "input.jsonl"
    digest = json.dumps({"purpose": purpose, "filename": name, "sha256": hashlib.sha256(content).hexdigest()})
    file_id, _ = create_id(router, principal, "POST /v1/files", new_file_id, digest)
    return services(router).files.create(principal.tenant_id, name, "batch", content, file_id)


@router.post(
    "/v1/files/uploads",
    status_code=201,
    summary="A presigned S3 PUT for an input larger than API Gateway's 10 MB body limit",
    tags=["files"],
)
def presign_upload(body: UploadRequest) -> PresignedUpload:
    principal = caller(router, Scope.BATCH)
    return services(router).files.presign(principal.tenant_id, body)


@router.get("/v1/files", summary="The caller's files", tags=["files"])
def list_files() -> FileList:
    return services(router).files.list(caller(router, Scope.BATCH).tenant_id)


@router.get("/v1/files/<file_id>", summary="A file's metadata", tags=["files"])
def get_file(file_id: FileId) -> FileObject:
    return services(router).files.view(caller(router, Scope.BATCH).tenant_id, file_id)


@router.get("/v1/files/<file_id>/content", summary="A file's content", tags=["files"])
def get_file_content(file_id: FileId) -> Response[Any]:
    content = services(router).files.content(caller(router, Scope.BATCH).tenant_id, file_id)
    return Response(HTTPStatus.OK, "application/octet-stream", body=content)


@router.delete("/v1/files/<file_id>", summary="Delete a file", tags=["files"])
def delete_file(file_id: FileId) -> FileDeleted:
    return services(router).files.delete(caller(router, Scope.BATCH).tenant_id, file_id)


@router.post("/v1/batches", summary="Create a batch from an uploaded JSONL file", tags=["batches"])
def create_batch(body: BatchCreate) -> Batch:
    """A client's retry (`Idempotency-Key`, or the SDK's identical resend) returns the first batch."""
    principal = caller(router, Scope.BATCH)
    batch_id, _ = create_id(router, principal, "POST /v1/batches", new_batch_id)
    return services(router).batches.create(principal.tenant_id, body, batch_id)


@router.get("/v1/batches", summary="The caller's batches, newest first", tags=["batches"])
def list_batches(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> BatchList:
    return services(router).batches.list(caller(router, Scope.BATCH).tenant_id, limit, after)


@router.get("/v1/batches/<batch_id>", summary="A batch", tags=["batches"])
def get_batch(batch_id: BatchId) -> Batch:
    return services(router).batches.get(caller(router, Scope.BATCH).tenant_id, batch_id).view()


@router.post("/v1/batches/<batch_id>/cancel", summary="Cancel a batch", tags=["batches"])
def cancel_batch(batch_id: BatchId) -> Batch:
    return services(router).batches.cancel(caller(router, Scope.BATCH).tenant_id, batch_id)
