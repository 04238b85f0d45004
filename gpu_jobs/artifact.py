"""The model artifact: sharded safetensors, tokenizer, config and `manifest.json`.

The manifest names the source and its hash, the method and its bits, every shard with its SHA-256
and size, the measured perplexity, the context window served (`max_model_len`: the server's
`--max-model-len` and the API's admission bound) and the library versions. The artifact's `model.py`
checks every shard against it when vLLM's server loads it, and fails the start on a mismatch.
Only pydantic is imported here: the file ships inside the artifact.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
Method = Literal["bf16", "fp32", "w4a16", "fp8"]


class ArtifactError(Exception):
    """The artifact cannot be served as it is; the message says which file and why."""


class Shard(BaseModel):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int


class Source(BaseModel):
    kind: Literal["gguf", "hf", "tiny-random"]
    name: str
    sha256: str | None = None


class Perplexity(BaseModel):
    value: float
    reference: float | None = Field(default=None, description="The bf16 model's perplexity on the same text.")
    eval_text: str
    tokens: int


class Manifest(BaseModel):
    format_version: Literal[1] = 1
    model_name: str
    source: Source
    method: Method
    bits: int
    group_size: int | None = None
    dtype: str
    max_model_len: int = Field(ge=1, description="The context window, prompt and completion together.")
    shards: list[Shard]
    total_bytes: int
    perplexity: Perplexity | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def sha256_file(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.safetensors"))


def describe_shards(directory: Path) -> list[Shard]:
    return [Shard(file=p.name, sha256=sha256_file(p), bytes=p.stat().st_size) for p in shard_files(directory)]


def write_manifest(directory: Path, **fields: Any) -> Manifest:
    shards = describe_shards(directory)
    manifest = Manifest(shards=shards, total_bytes=sum(s.bytes for s in shards), **fields)
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> Manifest:
    """The manifest, without checking the shards (the server's start does: the artifact's `model.py`)."""
    path = directory / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{directory} has no {MANIFEST}: not a Stratus model artifact")
    return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))


def verify(directory: Path) -> Manifest:
    """Check every shard named by the manifest (and no others) against its SHA-256 and size."""
    manifest = read_manifest(directory)
    present = {p.name for p in shard_files(directory)}
    expected = {s.file for s in manifest.shards}
    if present != expected:
        raise ArtifactError(f"shards on disk {sorted(present)} differ from the manifest's {sorted(expected)}")
    for shard in manifest.shards:
        file = directory / shard.file
        size = file.stat().st_size
        if size != shard.bytes:
            raise ArtifactError(f"shard {shard.file}: {size} bytes, the manifest says {shard.bytes}")
        digest = sha256_file(file)
        if digest != shard.sha256:
            raise ArtifactError(f"shard {shard.file}: SHA-256 {digest} does not match the manifest's {shard.sha256}")
    return manifest
