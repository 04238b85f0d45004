"""`serve`: the container's entry point (SageMaker runs `docker run <image> serve`)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gpu_jobs.batcher import ContinuousBatcher
from gpu_jobs.engine.base import GenerationEngine
from gpu_jobs.loader import load_engine
from gpu_jobs.server import ModelHolder, create_app
from gpu_jobs.settings import ServerSettings


def build_holder(settings: ServerSettings) -> ModelHolder:
    def load() -> tuple[GenerationEngine, ContinuousBatcher]:
        if settings.engine == "echo":
            from gpu_jobs.engine.echo import EchoEngine

            engine: GenerationEngine = EchoEngine.from_artifact(settings.model_dir)
        else:
            loaded = load_engine(settings.model_dir, settings)
            loaded.grammars()  # the tokenizer's grammar view, built while loading: not on the first schema request
            engine = loaded
        return engine, ContinuousBatcher(
            engine, settings.max_batch_size, settings.batch_wait_ms, settings.torch_threads
        )

    return ModelHolder(load)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] not in ("serve",):
        raise SystemExit(f"unknown command {args[0]!r}; SageMaker starts the container with 'serve'")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ServerSettings.from_environment()
    holder = build_holder(settings)
    holder.start()
    uvicorn.run(
        create_app(holder, settings.max_concurrent_invocations),
        host="0.0.0.0",  # noqa: S104 - the container must listen on its interface for SageMaker
        port=settings.port,
        log_level="info",
        workers=1,
    )


if __name__ == "__main__":
    main()
