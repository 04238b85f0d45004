"""The rows that decode together, and their tensors: what continuous batching moves around.

Each row keeps its own request, result so far, random generator and per-request logits
processors; the batch holds the KV cache, the attention mask and the next tokens and positions,
aligned by row. A row that finishes leaves the batch at once (its rows of the KV cache are
dropped, and columns no remaining row uses are trimmed), and new rows join a running batch
between two decode steps: they are prefilled on their own, then their cache is left-padded to
the running one's length and concatenated. Every row's real tokens stay contiguous at the right
of the cache, so the attention mask and per-row positions are all the model needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gpu_jobs.engine.base import GenerationRequest, GenerationResult


@dataclass
class Row:
    request: GenerationRequest
    result: GenerationResult
    generator: torch.Generator | None
    done: bool = False
    ticket: Any = None  # whatever the caller hangs on the row (the batcher: the request's future)
    processors: Any = None  # the request's logits processors (transformers' LogitsProcessorList), if any
    prompt_ids: list[int] = field(default_factory=list)
    stop: Any = None  # transformers' StopStringCriteria for the request's stop sequences, if any


@dataclass
class DecodeBatch:
    """The rows decoding together and their tensors, aligned by row."""

    rows: list[Row] = field(default_factory=list)
    cache: Any = None
    mask: torch.Tensor | None = None  # [rows, cache length]: 1 where the cache holds a real token
    next_ids: torch.Tensor | None = None  # [rows, 1]: the tokens picked last, not fed yet
    next_pos: torch.Tensor | None = None  # [rows, 1]: their positions
    finished: list[Row] = field(default_factory=list)

    def take_finished(self) -> list[Row]:
        done, self.finished = self.finished, []
        return done

    def merge(self, other: DecodeBatch) -> DecodeBatch:
        """`other`'s rows join this batch: the shorter cache is left-padded, then both are concatenated."""
        self.finished.extend(other.take_finished())
        if not other.rows:
            return self
        if not self.rows:
            other.finished = self.finished
            return other
        assert self.mask is not None and other.mask is not None
        width = max(self.mask.shape[1], other.mask.shape[1])

        def widen(tensor: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - tensor.shape[dim]
            if not missing:
                return tensor
            shape = list(tensor.shape)
            shape[dim] = missing
            return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([widen(mine.keys, 2), widen(theirs.keys, 2)], dim=0)
            mine.values = torch.cat([widen(mine.values, 2), widen(theirs.values, 2)], dim=0)
        self.mask = torch.cat([widen(self.mask, 1), widen(other.mask, 1)], dim=0)
        self.next_ids = torch.cat([self.next_ids, other.next_ids], dim=0)  # type: ignore[list-item]
        self.next_pos = torch.cat([self.next_pos, other.next_pos], dim=0)  # type: ignore[list-item]
        self.rows.extend(other.rows)
        return self

    def compact(self) -> None:
        """Move finished rows out, drop their cache rows, trim cache columns no row uses any more."""
        keep = [i for i, row in enumerate(self.rows) if not row.done]
        self.finished.extend(row for row in self.rows if row.done)
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.next_ids, self.next_pos = [], None, None, None, None
            return
        assert self.mask is not None and self.next_ids is not None and self.next_pos is not None
        index = torch.tensor(keep, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        self.cache.batch_select_indices(index)
        self.mask, self.next_ids, self.next_pos = self.mask[index], self.next_ids[index], self.next_pos[index]
        first = int(self.mask.any(dim=0).nonzero()[0])
        if first:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]
