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
    """One prompt (one choice of a request), already rendered with the chat template where it was a chat.

    `schema`: a JSON schema the output must follow (structured output, forced tool calls), enforced
    token by token. `logprobs`: None for none, else how many alternatives to report per token.
    Penalties follow OpenAI's definition: each logit is lowered by `presence_penalty` if its token
    appeared in the output so far and by `frequency_penalty` times the number of times it did."""

    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    schema: dict[str, Any] | None = field(default=None, hash=False)
    logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token's log-probability under the model, and the most likely tokens there."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class GenerationResult:
    text: str = ""
    finish_reason: Literal["stop", "length"] = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    error_code: str | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs] | None = None


class GenerationEngine(ABC):
    """Generates for many requests at once; a bad request gets an error result, never an exception.
    The prompt side (the model's name, its tokenizer's chat template) is common to every engine."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self._tokenizer = tokenizer
        self._name = name

    @property
    def model_name(self) -> str:
        return self._name

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The model's chat template applied, ready for the assistant's turn (`tools`: the function
        definitions, for a template that has a tools format)."""
        rendered = self._tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=True
        )
        return str(rendered)

    @property
    def chat_template_has_tools(self) -> bool:
        """Whether the model's chat template renders tool definitions itself."""
        return "tools" in str(self._tokenizer.chat_template or "")

    @abstractmethod
    def token_piece(self, token_id: int) -> tuple[str, bytes]:
        """A token's text and its exact bytes (for logprobs)."""

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
