"""Files (OpenAI's Files API, `purpose=batch`): JSONL inputs and the batches' output files.

Content lives in S3 under the tenant's prefix; metadata in the Files table keyed by tenant, so
another tenant's file id is simply not found. API Gateway caps a request body at 10 MB; a larger
input goes straight to S3 through a presigned PUT (`POST /v1/files/uploads`).

**A deleted file stays deleted.** A batch's output and error files have ids derived from the batch
(`batches.output.batch_file_id`), and two finalizers of one batch may run (SQS delivers at least
once): the tenant could delete the file the first one wrote while the second is still writing it.
So deleting leaves a tombstone under the file's id for `TOMBSTONE_SECONDS` (longer than any message
that could still finalize the batch lives), and a write whose record finds a tombstone takes its
content back out and raises `FileWasDeleted`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stratus_core.clock import utcnow
from stratus_core.errors import InvalidRequest, NotFound

FilePurpose = Literal["batch", "batch_output"]
TOMBSTONE_SECONDS = 30 * 24 * 3600
"""How long a deleted file's id stays taken: past the batch queue's 4-day retention and a message
redriven from its dead-letter queue (14 days), so no finalizer of its batch can still be running."""
MAX_FILENAME = 255
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed"] = "processed"


class StoredFile(FileObject):
    tenant_id: str
    key: str


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=MAX_FILENAME)
    purpose: Literal["batch"]
    bytes: int = Field(ge=1, le=MAX_UPLOAD_BYTES)


class PresignedUpload(BaseModel):
    file: FileObject
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_in: int


class FileWasDeleted(Exception):
    """The file's tenant deleted it while it was being written: it stays deleted."""


class FileStore(Protocol):
    def put(self, stored: StoredFile) -> bool:
        """Store the record; False, storing nothing, when the file was deleted (its tombstone)."""
        ...

    def get(self, tenant_id: str, file_id: str) -> StoredFile | None: ...  # None once deleted

    def list(self, tenant_id: str) -> list[StoredFile]: ...  # without the deleted ones

    def delete(self, tenant_id: str, file_id: str, deleted_at: int, expires_at: int) -> None:
        """Replace the record with a tombstone that lives until `expires_at`."""
        ...

    def mark_processed(self, tenant_id: str, file_id: str, size: int) -> None: ...


class Blobs(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def presigned_put(self, key: str, expires_in: int) -> str: ...


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def safe_filename(name: str) -> str:
    """The name as shown back to the client; never used to build a storage key."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = "".join(ch for ch in base if ch.isprintable())[:MAX_FILENAME]
    if not cleaned or cleaned in (".", ".."):
        raise InvalidRequest("a file needs a name", param="file")
    return cleaned


class FileService:
    def __init__(
        self, store: FileStore, blobs: Blobs, upload_url_seconds: int = 900, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._upload_seconds = upload_url_seconds
        self._clock = clock

    def create(
        self, tenant_id: str, filename: str, purpose: FilePurpose, content: bytes, file_id: str | None = None
    ) -> FileObject:
        """Store an uploaded file; under `file_id` when given, where a file that exists already (an
        earlier attempt of the same create, `creates.py`) is returned as it is."""
        if file_id is not None:
            existing = self._store.get(tenant_id, file_id)
            if existing is not None:
                return FileObject(**existing.model_dump(exclude={"tenant_id", "key"}))
        file_id = file_id or new_file_id()
        return self.write(tenant_id, file_id, filename, purpose, content, int(self._clock().timestamp()))

    def write(
        self, tenant_id: str, file_id: str, filename: str, purpose: FilePurpose, content: bytes, created_at: int
    ) -> FileObject:
        """Write a file under an id the caller chose. The storage key and the record are functions
        of the arguments alone, so writing the same file twice, even concurrently, leaves one file:
        the same object and the same record, never a second one. The content goes first, so a
        record that can be listed always has its content. A file deleted meanwhile (a late second
        writer) stays deleted: its content goes again and `FileWasDeleted` is raised."""
        key = f"files/{tenant_id}/{file_id}.jsonl"
        self._blobs.put_bytes(key, content, "application/jsonl")
        stored = StoredFile(
            id=file_id,
            bytes=len(content),
            created_at=created_at,
            filename=safe_filename(filename),
            purpose=purpose,
            tenant_id=tenant_id,
            key=key,
        )
        if not self._store.put(stored):
            self._blobs.delete(key)
            raise FileWasDeleted(file_id)
        return FileObject(**stored.model_dump(exclude={"tenant_id", "key"}))

    def presign(self, tenant_id: str, request: UploadRequest) -> PresignedUpload:
        file_id = new_file_id()
        key = f"files/{tenant_id}/{file_id}.jsonl"
        stored = StoredFile(
            id=file_id,
            bytes=request.bytes,
            created_at=int(self._clock().timestamp()),
            filename=safe_filename(request.filename),
            purpose="batch",
            status="uploaded",
            tenant_id=tenant_id,
            key=key,
        )
        self._store.put(stored)
        return PresignedUpload(
            file=FileObject(**stored.model_dump(exclude={"tenant_id", "key"})),
            upload_url=self._blobs.presigned_put(key, self._upload_seconds),
            headers={"Content-Type": "application/jsonl"},
            expires_in=self._upload_seconds,
        )

    def get(self, tenant_id: str, file_id: str) -> StoredFile:
        stored = self._store.get(tenant_id, file_id)
        if stored is None:
            raise NotFound("file", file_id)
        if stored.status == "uploaded":
            size = self._blobs.size(stored.key)
            if size is not None:
                self._store.mark_processed(tenant_id, file_id, size)
                stored = stored.model_copy(update={"status": "processed", "bytes": size})
        return stored

    def view(self, tenant_id: str, file_id: str) -> FileObject:
        return FileObject(**self.get(tenant_id, file_id).model_dump(exclude={"tenant_id", "key"}))

    def list(self, tenant_id: str) -> FileList:
        files = sorted(self._store.list(tenant_id), key=lambda f: f.created_at, reverse=True)
        return FileList(data=[FileObject(**f.model_dump(exclude={"tenant_id", "key"})) for f in files])

    def content(self, tenant_id: str, file_id: str) -> bytes:
        stored = self.get(tenant_id, file_id)
        data = self._blobs.get_bytes(stored.key)
        if data is None:
            raise NotFound("file content", file_id)
        return data

    def delete(self, tenant_id: str, file_id: str) -> FileDeleted:
        stored = self.get(tenant_id, file_id)
        now = int(self._clock().timestamp())
        self._store.delete(tenant_id, file_id, now, now + TOMBSTONE_SECONDS)
        self._blobs.delete(stored.key)
        return FileDeleted(id=file_id)
