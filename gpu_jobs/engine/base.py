"""The generation engine's interface: a batch of requests in, one result per request out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal


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
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...
