"""A tiny random model built into an artifact once per session, and a server on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpu_jobs.build import BuildRequest, build  # noqa: E402
from gpu_jobs.serve import build_holder  # noqa: E402
from gpu_jobs.server import ModelHolder, create_app  # noqa: E402
from gpu_jobs.settings import ServerSettings  # noqa: E402
from gpu_jobs.tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-source"))


@pytest.fixture(scope="session")
def tiny_artifact(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("tiny-artifact")
    build(BuildRequest(source=tiny_source, output=output, method="fp32", model_name="tiny", max_shard_size="100KB"))
    return output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningServer:
    def __init__(self, holder: ModelHolder, port: int) -> None:
        self.holder = holder
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def server(tiny_artifact: Path) -> Iterator[RunningServer]:
    import uvicorn

    port = free_port()
    settings = ServerSettings.from_environment(
        {
            "SM_MODEL_DIR": str(tiny_artifact),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "STRATUS_DTYPE": "float32",
            "STRATUS_BATCH_WAIT_MS": "20",
            "STRATUS_MAX_BATCH_SIZE": "16",
        }
    )
    holder = build_holder(settings)
    holder.start()
    config = uvicorn.Config(create_app(holder), host="127.0.0.1", port=port, log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.wait(60), holder.error
    yield RunningServer(holder, port)
    uvicorn_server.should_exit = True
    thread.join(10)
