"""The real SmolLM2 artifact (`make model`), under the `slow` marker: `make test-slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_jobs.engine.base import GenerationRequest
from gpu_jobs.loader import load_engine
from gpu_jobs.settings import ServerSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact() -> Path:
    directory = Path(os.environ.get("STRATUS_MODEL_DIR", ".stratus/models/smollm2-int4"))
    if not (directory / "manifest.json").exists():
        pytest.fail(f"no artifact at {directory}: run `make model` first")
    return directory


def test_smollm2_knows_the_capital_of_france(artifact: Path) -> None:
    engine = load_engine(artifact, ServerSettings.from_environment({"STRATUS_TORCH_THREADS": "2"}))
    prompt = engine.render_chat([{"role": "user", "content": "What is the capital of France?"}])

    (result,) = engine.generate([GenerationRequest(prompt=prompt, max_tokens=32, temperature=0)])

    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.prompt_tokens == engine.count_tokens(prompt)
