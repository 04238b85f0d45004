"""The transformers implementation: continuous batching over a left-padded KV cache.

Requests decode together in a `DecodeBatch`; each row keeps its own sampling (temperature, top-p,
seed through its own `torch.Generator`), its own `max_tokens`, stop sequences and end token.
A row that finishes leaves the batch at once (its rows of the KV cache are dropped, and columns
no remaining row uses are trimmed), and new requests join a running batch between two decode
steps: they are prefilled on their own, then their cache is left-padded to the running one's
length and concatenated. Every row's real tokens stay contiguous at the right of the cache, so
the attention mask and per-row positions are all the model needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult


@dataclass
class _Row:
    request: GenerationRequest
    result: GenerationResult
    generator: torch.Generator | None
    done: bool = False
    ticket: Any = None  # whatever the caller hangs on the row (the batcher: the request's future)


@dataclass
class DecodeBatch:
    """The rows decoding together and their tensors, aligned by row."""

    rows: list[_Row] = field(default_factory=list)
    cache: Any = None
    mask: torch.Tensor | None = None  # [rows, cache length]: 1 where the cache holds a real token
    next_ids: torch.Tensor | None = None  # [rows, 1]: the tokens picked last, not fed yet
    next_pos: torch.Tensor | None = None  # [rows, 1]: their positions
    finished: list[_Row] = field(default_factory=list)

    def take_finished(self) -> list[_Row]:
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


class TransformersEngine(GenerationEngine):
    def __init__(self, model: Any, tokenizer: Any, name: str, max_context: int | None = None) -> None:
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._name = name
        self._device = next(model.parameters()).device
        self._max_context = max_context or int(getattr(model.config, "max_position_embeddings", 2048))
        self._eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def model_name(self) -> str:
        return self._name

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return str(self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)

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

    @torch.inference_mode()
    def admit(self, requests: list[GenerationRequest], tickets: list[Any] | None = None) -> DecodeBatch:
        """Tokenize and prefill `requests` as a new batch; each row has its first token picked already.
        A request that cannot run (too long for the context) is finished with an error result."""
        batch = DecodeBatch()
        prompts: list[list[int]] = []
        for i, request in enumerate(requests):
            ids = self._tokenizer(request.prompt, add_special_tokens=False).input_ids
            result = GenerationResult(prompt_tokens=len(ids))
            ticket = tickets[i] if tickets else None
            if len(ids) + request.max_tokens > self._max_context:
                result.error_code = "context_length_exceeded"
                result.error = (
                    f"the prompt ({len(ids)} tokens) and max_tokens ({request.max_tokens}) exceed the "
                    f"model's context of {self._max_context} tokens"
                )
                batch.finished.append(_Row(request, result, None, done=True, ticket=ticket))
                continue
            generator = None
            if request.seed is not None:
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
            batch.rows.append(_Row(request, result, generator, ticket=ticket))
            prompts.append(ids)
        if not batch.rows:
            return batch
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, ids in enumerate(prompts):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        batch.cache, batch.mask = out.cache, mask
        batch.next_pos = positions[:, -1:] + 1
        batch.next_ids = self._pick_all(out.logits[:, -1, :], batch.rows)
        batch.compact()
        return batch

    @torch.inference_mode()
    def step(self, batch: DecodeBatch) -> None:
        """One decode step for every row of `batch`; rows that finish move to `batch.finished`."""
        assert batch.mask is not None and batch.next_pos is not None
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=-1)
        out = self._model(
            input_ids=batch.next_ids,
            attention_mask=mask,
            position_ids=batch.next_pos,
            cache=batch.cache,
            use_cache=True,
        )
        batch.cache, batch.mask, batch.next_pos = out.cache, mask, batch.next_pos + 1
        batch.next_ids = self._pick_all(out.logits[:, -1, :], batch.rows)
        batch.compact()

    def _pick_all(self, last_logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        logits = last_logits.float().cpu()
        picked = torch.full((len(rows),), self._pad, dtype=torch.long)
        for i, row in enumerate(rows):
            token = self._pick(logits[i], row)
            picked[i] = token
            self._advance(row, token)
        return picked.unsqueeze(-1).to(self._device)

    @staticmethod
    def _pick(logits: torch.Tensor, row: _Row) -> int:
        request = row.request
        if request.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / request.temperature, dim=-1)
        if request.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < request.top_p
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs / probs.sum(), 1, generator=row.generator))

    def _advance(self, row: _Row, token: int) -> None:
        if token in self._eos:
            self._finish(row, "stop")
            return
        row.result.token_ids.append(token)
        if row.request.stop:
            text = self._tokenizer.decode(row.result.token_ids, skip_special_tokens=True)
            cut = min((text.find(s) for s in row.request.stop if s in text), default=-1)
            if cut >= 0:
                self._finish(row, "stop", text[:cut])
                return
        if len(row.result.token_ids) >= row.request.max_tokens:
            self._finish(row, "length")

    def _finish(self, row: _Row, reason: str, text: str | None = None) -> None:
        row.done = True
        row.result.finish_reason = "stop" if reason == "stop" else "length"
        row.result.completion_tokens = len(row.result.token_ids)
        row.result.text = (
            text if text is not None else self._tokenizer.decode(row.result.token_ids, skip_special_tokens=True)
        )
