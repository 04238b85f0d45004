"""The transformers implementation: a batched, left-padded decoding loop with a KV cache.

Requests generated together share forward passes; each row keeps its own sampling (temperature,
top-p, seed through its own `torch.Generator`), its own `max_tokens`, stop sequences and end
token. A row that finishes stops contributing tokens (its slot idles until the batch ends: this
is dynamic batching, not continuous batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult


@dataclass
class _Row:
    request: GenerationRequest
    result: GenerationResult
    generator: torch.Generator | None
    done: bool = False


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
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        rows: list[_Row] = []
        prompts: list[list[int]] = []
        for request in requests:
            ids = self._tokenizer(request.prompt, add_special_tokens=False).input_ids
            result = GenerationResult(prompt_tokens=len(ids))
            if len(ids) + request.max_tokens > self._max_context:
                result.error_code = "context_length_exceeded"
                result.error = (
                    f"the prompt ({len(ids)} tokens) and max_tokens ({request.max_tokens}) exceed the "
                    f"model's context of {self._max_context} tokens"
                )
                rows.append(_Row(request, result, None, done=True))
                continue
            generator = None
            if request.seed is not None:
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
            rows.append(_Row(request, result, generator))
            prompts.append(ids)
        active = [row for row in rows if not row.done]
        if active:
            self._decode(active, prompts)
        return [row.result for row in rows]

    def _decode(self, rows: list[_Row], prompts: list[list[int]]) -> None:
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(prompts):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        steps = max(row.request.max_tokens for row in rows)
        for _ in range(steps):
            out = self._model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=past, use_cache=True
            )
            past = out.cache
            logits = out.logits[:, -1, :].float().cpu()
            next_tokens = torch.full((len(rows),), self._pad, dtype=torch.long)
            for i, row in enumerate(rows):
                if row.done:
                    continue
                token = self._pick(logits[i], row)
                next_tokens[i] = token
                self._advance(row, token)
            if all(row.done for row in rows):
                break
            input_ids = next_tokens.unsqueeze(-1).to(self._device)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long, device=self._device)], dim=-1)
            positions = positions[:, -1:] + 1
        for row in rows:
            if not row.done:
                self._finish(row, "length")

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
