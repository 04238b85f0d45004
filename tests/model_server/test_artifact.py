"""The artifact carries the pack handler vLLM's own image loads, and refuses to serve corrupted weights."""

from __future__ import annotations

import importlib.util
import shutil
import tarfile
from pathlib import Path

import pytest

from gpu_jobs.artifact import ArtifactError, verify
from gpu_jobs.serve import vllm_arguments


def load_model_script(artifact: Path) -> object:
    """Load the artifact's `model.py` as model-hosting-container-standards does (by file path)."""
    spec = importlib.util.spec_from_file_location(f"customer_model_{abs(hash(artifact))}", artifact / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_archive_holds_the_weights_the_manifest_and_the_pack_handler(tiny_artifact: Path) -> None:
    with tarfile.open(tiny_artifact / "model.tar.gz") as archive:
        names = set(archive.getnames())
    manifest = verify(tiny_artifact)
    assert {"manifest.json", "model.py", "config.json", "tokenizer.json"} <= names
    assert {shard.file for shard in manifest.shards} <= names
    assert {"code/gpu_jobs/pack_handler.py", "code/stratus_core/contract.py"} <= names
    assert manifest.max_model_len == 1024  # the tiny model's max_position_embeddings


def test_the_model_script_exposes_the_invocation_handler(tiny_artifact: Path) -> None:
    module = load_model_script(tiny_artifact)
    assert callable(module.custom_sagemaker_invocation_handler)  # type: ignore[attr-defined]


def test_a_corrupted_shard_fails_the_servers_start(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    shard = sorted(broken.glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))

    with pytest.raises(ArtifactError, match=f"shard {shard.name}: SHA-256"):
        load_model_script(broken)


def test_sm_vllm_variables_become_vllm_flags_as_in_awss_image() -> None:
    environ = {
        "SM_VLLM_MAX_MODEL_LEN": "4096",
        "SM_VLLM_ENFORCE_EAGER": "",
        "SM_VLLM_TENSOR_PARALLEL_SIZE": "4",
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "OTHER": "x",
    }
    assert vllm_arguments(environ) == [
        *("--port", "9000"),
        "--enforce-eager",
        *("--max-model-len", "4096"),
        *("--tensor-parallel-size", "4"),
    ]


def test_the_model_server_gets_the_artifact_as_an_absolute_path(
    tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` passes `--model-dir .stratus/models/…`; vLLM's SageMaker layer then found no `model.py`
    under the relative path and the server exited at its first start."""
    from stratus.localcloud.endpoint import ModelProcess

    monkeypatch.chdir(tiny_artifact.parent)
    _, env = ModelProcess(Path(tiny_artifact.name), threads=2, engine="vllm").command(8080)

    assert env["SAGEMAKER_MODEL_PATH"] == env["SM_VLLM_MODEL"] == str(tiny_artifact.resolve())
