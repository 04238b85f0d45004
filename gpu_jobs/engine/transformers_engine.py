"""The transformers implementation: continuous batching over a left-padded KV cache.

Requests decode together in a `DecodeBatch` (see `decode_batch.py`), each row with its own options,
so requests with different options share one batch. A row's next token goes through its own
`LogitsProcessorList`, in transformers' order: OpenAI's presence and frequency penalties
(`OpenAIPenalties`: transformers' `RepetitionPenaltyLogitsProcessor` is multiplicative, OpenAI's
penalties are additive), `logit_bias` (transformers' `SequenceBiasLogitsProcessor`), the JSON
grammar (`constraints.JsonConstraint`), then temperature and top-p (transformers' warpers);
greedy rows take the argmax of the processed scores, so bias and grammar hold at temperature 0
too. The seed is the row's own `torch.Generator`. Stop sequences are detected by transformers'
`StopStringCriteria` on the generated tokens (a table lookup per step, no decoding), and the text
is decoded once, when the row ends. Log-probabilities are the model's own (`log_softmax` of its
logits, before any processor).

Why our `DecodeBatch` and not transformers' own continuous batching (`generate_batch`, the
`ContinuousBatchingManager` behind it, transformers 5.24). Measured by `bench/continuous_batching.py`
(bench/RESULTS.md): on the int4 artifact, 16 greedy requests of 64 tokens, 2 threads, it made 48.8
completion tokens/s where `DecodeBatch` made 68.7 (0.71×) in the same run. And it cannot carry our
options per request: its per-request logits processors are temperature, top-k and top-p only
(`cb_logits_processors.py`); one seed serves the whole manager, so `n` with a `seed` could not be
reproducible per request; penalties, `logit_bias`, a grammar per row and log-probabilities would all
be hooks into its internals. Its paged KV cache pays off with long contexts and many sequences on a
GPU; at 135M parameters on a CPU, the per-step bookkeeping is what it adds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    SequenceBiasLogitsProcessor,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult, TokenLogprobs
from gpu_jobs.engine.constraints import GrammarError, TokenizerGrammars
from gpu_jobs.engine.decode_batch import DecodeBatch, Row


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's presence and frequency penalties over the tokens generated so far (not the prompt):
    `logit[t] -= presence_penalty * (count[t] > 0) + frequency_penalty * count[t]`."""

    def __init__(self, presence: float, frequency: float, prompt_length: int) -> None:
        self._presence = presence
        self._frequency = frequency
        self._prompt = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[0, self._prompt :]
        if generated.numel() == 0:
            return scores
        counts = torch.bincount(generated, minlength=scores.shape[-1])[: scores.shape[-1]].to(scores.dtype)
        penalty = self._frequency * counts + self._presence * (counts > 0).to(scores.dtype)
        return scores - penalty.unsqueeze(0)  # type: ignore[return-value]


class TransformersEngine(GenerationEngine):
    def __init__(self, model: Any, tokenizer: Any, name: str, max_context: int | None = None) -> None:
        super().__init__(tokenizer, name)
        self._model = model.eval()
        self._device = next(model.parameters()).device
        self._max_context = max_context or int(getattr(model.config, "max_position_embeddings", 2048))
        self._eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._vocab = int(model.get_output_embeddings().out_features)  # an int4 head has no `weight`
        self._grammars: TokenizerGrammars | None = None
        self._pieces = _byte_pieces(tokenizer)

    def token_piece(self, token_id: int) -> tuple[str, bytes]:
        raw = self._pieces(token_id)
        return raw.decode("utf-8", errors="replace"), raw

    def grammars(self) -> TokenizerGrammars:
        """The tokenizer's grammar compiler, built on first use (structured output and tool calls)."""
        if self._grammars is None:
            self._grammars = TokenizerGrammars(self._tokenizer, self._vocab)
        return self._grammars

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
            try:
                processors = self._processors(request, len(ids))
            except GrammarError as invalid:
                result.error_code, result.error = "invalid_request", str(invalid)
                batch.finished.append(Row(request, result, None, done=True, ticket=ticket))
                continue
            generator = None
            if request.seed is not None:
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
            if request.logprobs is not None:
                result.logprobs = []
            row = Row(request, result, generator, ticket=ticket, processors=processors, prompt_ids=ids)
            row.stop = _stop_criteria(self._tokenizer, request.stop) if request.stop else None
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

    def _processors(self, request: GenerationRequest, prompt_length: int) -> LogitsProcessorList:
        """The row's processors, in transformers' order; warpers only when it samples."""
        processors = LogitsProcessorList()
        if request.presence_penalty or request.frequency_penalty:
            processors.append(OpenAIPenalties(request.presence_penalty, request.frequency_penalty, prompt_length))
        if request.logit_bias:
            bias: list[list[list[int] | float]] = [
                [[token], value] for token, value in request.logit_bias if token < self._vocab
            ]
            processors.append(SequenceBiasLogitsProcessor(sequence_bias=bias))
        if request.schema is not None:
            processors.append(self.grammars().constraint(request.schema, prompt_length))
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
        scores = logits
        if row.processors:
            history = torch.tensor([row.prompt_ids + row.result.token_ids], dtype=torch.long)
            scores = row.processors(history, logits)
        if row.request.temperature == 0:
            token = int(torch.argmax(scores))
        else:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs[0], 1, generator=row.generator))
        if row.result.logprobs is not None:
            row.result.logprobs.append(_logprobs(logits, token, row.request.logprobs or 0))
        return token

    def _advance(self, row: Row, token: int) -> None:
        if token in self._eos:
            if row.result.logprobs:
                row.result.logprobs.pop()  # the end token is not part of the output
            self._finish(row, "stop")
            return
        row.result.token_ids.append(token)
        if row.stop is not None:
            generated = torch.tensor([row.result.token_ids], dtype=torch.long)
            if bool(row.stop(generated, None)[0]):
                text = self._tokenizer.decode(row.result.token_ids, skip_special_tokens=True)
                cut = min((text.find(s) for s in row.request.stop if s in text), default=len(text))
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


def _logprobs(logits: torch.Tensor, token: int, top: int) -> TokenLogprobs:
    """The model's log-probability of `token` and its `top` most likely tokens, most likely first."""
    logprobs = torch.log_softmax(logits[0].float(), dim=-1)
    alternatives: tuple[tuple[int, float], ...] = ()
    if top:
        values, indices = torch.topk(logprobs, top)
        alternatives = tuple((int(i), float(v)) for i, v in zip(indices, values, strict=True))
    return TokenLogprobs(token, float(logprobs[token]), alternatives)


@lru_cache(maxsize=64)
def _stop_criteria_cached(tokenizer: Any, stop: tuple[str, ...]) -> StopStringCriteria:
    return StopStringCriteria(tokenizer, list(stop))


def _stop_criteria(tokenizer: Any, stop: tuple[str, ...]) -> StopStringCriteria:
    """transformers' stop-string check (its tables are built once per stop list and tokenizer)."""
    return _stop_criteria_cached(tokenizer, tuple(stop))


def _byte_pieces(tokenizer: Any) -> Any:
    """A token id's exact bytes: byte-level BPE vocabularies (GPT-2's scheme, SmolLM2's) spell each
    byte as one printable character; other tokens are their UTF-8 text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}  # type: ignore[no-untyped-call]

    def piece(token_id: int) -> bytes:
        token = tokenizer.convert_ids_to_tokens(token_id)
        if isinstance(token, str) and all(char in to_byte for char in token):
            return bytes(to_byte[char] for char in token)
        return str(tokenizer.decode([token_id])).encode()

    return piece
