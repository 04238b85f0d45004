"""The generation engine's interface: requests are admitted into a decoding batch, which steps
until every row is finished. `generate` (a fixed set of requests, no arrivals) is built on the two;
the continuous batcher calls them directly, so that requests can join between any two steps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gpu_jobs.engine.decode_batch import DecodeBatch


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, already rendered with the chat template where it was a chat."""

    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class GenerationResult:
    text: str = ""
    finish_reason: Literal["stop", "length"] = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    error_code: str | None = None
    token_ids: list[int] = field(default_factory=list)


class GenerationEngine(ABC):
    """Generates for many requests at once; a bad request gets an error result, never an exception."""

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @abstractmethod
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The model's chat template applied, ready for the assistant's turn."""

    @abstractmethod
    def admit(self, requests: list[GenerationRequest], tickets: list[Any] | None = None) -> DecodeBatch:
        """Start decoding `requests` as a new batch (each row's first token picked already); a
        request that cannot run is in `finished` with an error result. `tickets` ride on the rows."""

    @abstractmethod
    def step(self, batch: DecodeBatch) -> None:
        """One decode step for every row of `batch`; rows that finish move to `batch.finished`."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate for `requests` together (no new arrivals); results in the requests' order."""
        batch = self.admit(requests, tickets=list(range(len(requests))))
        results: list[GenerationResult] = [GenerationResult() for _ in requests]
        while True:
            for row in batch.take_finished():
                results[row.ticket] = row.result
            if not batch.rows:
                return results
            self.step(batch)
