"""An instant engine for load tests of the serverless path: no model, the artifact's tokenizer.

It answers each request with the first `max_tokens` tokens of its prompt, at once, and counts
usage with the same tokenizer the real engine uses, so that metering is exercised exactly while
the model costs nothing. Selected with `STRATUS_ENGINE=echo`; never the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult
from gpu_jobs.engine.decode_batch import DecodeBatch, Row


class EchoEngine(GenerationEngine):
    @classmethod
    def from_artifact(cls, directory: Path) -> EchoEngine:
        from transformers import AutoTokenizer

        from gpu_jobs.artifact import verify

        return cls(AutoTokenizer.from_pretrained(directory), verify(directory).model_name)

    def token_piece(self, token_id: int) -> tuple[str, bytes]:
        text = str(self._tokenizer.decode([token_id]))
        return text, text.encode()

    def admit(self, requests: list[GenerationRequest], tickets: list[Any] | None = None) -> DecodeBatch:
        """Every request is finished here: its answer is its own prompt's first tokens."""
        batch = DecodeBatch()
        for i, request in enumerate(requests):
            ids = self._tokenizer(request.prompt, add_special_tokens=False).input_ids
            echoed = ids[: request.max_tokens]
            result = GenerationResult(
                text=self._tokenizer.decode(echoed, skip_special_tokens=True),
                finish_reason="length" if len(ids) >= request.max_tokens else "stop",
                prompt_tokens=len(ids),
                completion_tokens=len(echoed),
                token_ids=list(echoed),
            )
            batch.finished.append(Row(request, result, None, done=True, ticket=tickets[i] if tickets else None))
        return batch

    def step(self, batch: DecodeBatch) -> None:
        return None  # no row is ever left decoding
