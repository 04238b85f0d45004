"""The transformers implementation: continuous batching over a left-padded KV cache.

Requests decode together in a `DecodeBatch` (see `decode_batch.py`); each row keeps its own
sampling — temperature and top-p through transformers' own logits warpers, the seed through its
own `torch.Generator` — and its own `max_tokens`, stop sequences and end token.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult
from gpu_jobs.engine.decode_batch import DecodeBatch, Row


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
                batch.finished.append(Row(request, result, None, done=True, ticket=ticket))
                continue
            generator = None
            if request.seed is not None:
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
            row = Row(request, result, generator, ticket=ticket, processors=self._processors(request), prompt_ids=ids)
            batch.rows.append(row)
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

    @staticmethod
    def _processors(request: GenerationRequest) -> LogitsProcessorList:
        """transformers' warpers for the request's sampling (none for greedy decoding)."""
        processors = LogitsProcessorList()
        if request.temperature > 0:
            if request.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(request.temperature))
            if request.top_p < 1.0:
                processors.append(TopPLogitsWarper(request.top_p))
        return processors

    def _pick_all(self, last_logits: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        logits = last_logits.float().cpu()
        picked = torch.full((len(rows),), self._pad, dtype=torch.long)
        for i, row in enumerate(rows):
            token = self._pick(logits[i : i + 1], row)
            picked[i] = token
            self._advance(row, token)
        return picked.unsqueeze(-1).to(self._device)

    @staticmethod
    def _pick(logits: torch.Tensor, row: Row) -> int:
        """The next token of one row from its logits (`[1, vocab]`), through its processors."""
        if row.request.temperature == 0:
            return int(torch.argmax(logits))
        scores = logits
        if row.processors:
            history = torch.tensor([row.prompt_ids + row.result.token_ids], dtype=torch.long)
            scores = row.processors(history, logits)
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs[0], 1, generator=row.generator))

    def _advance(self, row: Row, token: int) -> None:
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

    def _finish(self, row: Row, reason: str, text: str | None = None) -> None:
        row.done = True
        row.result.finish_reason = "stop" if reason == "stop" else "length"
        row.result.completion_tokens = len(row.result.token_ids)
        row.result.text = (
            text if text is not None else self._tokenizer.decode(row.result.token_ids, skip_special_tokens=True)
        )
