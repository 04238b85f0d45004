"""Constrained decoding: a row's next token is drawn only from tokens its grammar allows.

Structured output (`response_format` json_object / json_schema) and forced tool calls
(`tool_choice` required or named) become a JSON schema; llguidance compiles it against the model's
tokenizer and, before every decoding step, says which tokens may come next (a bitmask over the
vocabulary). The mask is applied as a transformers `LogitsProcessor`, after penalties and bias and
before temperature and top-p, so the output is schema-valid **by construction** at any temperature:
every token drawn keeps the text a prefix of a valid document, and the end token is allowed only
once the document is complete. A row that reaches `max_tokens` first ends with `length` and an
incomplete document (it says so; it is never passed off as valid).

Properties come in the order the schema declares them (the schema is passed on as written), as
OpenAI's structured outputs do.

Why llguidance, measured by `bench/grammar_overhead.py` on SmolLM2's 49,152-token vocabulary
against xgrammar 0.2.8 and outlines-core 0.2.14, each plugged in as the same logits processor
(bench/RESULTS.md, 2026-12-01):
- per token, the three cost the same inside our batcher: a decode step of 8 constrained rows took
  0.98–1.03× the unconstrained step with llguidance (0.92–1.13× with the others, within this
  machine's noise), the mask itself 0.3–0.6 ms per row and token for all three;
- a new schema is where they differ, and every request may bring one: llguidance builds its
  matcher lazily, 1.2–2.7 ms for a schema including the first mask (15 ms the very first time);
  xgrammar compiles each schema up front, 6–750 ms; outlines-core builds a whole index per schema,
  0.8–1.6 s for small ones and **52–72 s** for a string with `minLength: 2000`, minutes of the
  model server's CPU that any tenant could ask for;
- dependencies: llguidance is one Rust extension with no Python requirements; xgrammar requires
  torch, transformers and, on Linux x86-64, triton; outlines-core needs a vocabulary rebuilt by
  hand from the tokenizer's byte pieces, where llguidance takes the transformers tokenizer;
- all three are maintained (releases in 2026); vLLM and SGLang offer llguidance as a
  structured-output backend, and llama.cpp can be built with it.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

WHITESPACE = {"whitespace_flexible": False}
"""Compact JSON: no runs of spaces and newlines for a small model to wander into."""


class GrammarError(ValueError):
    """The schema cannot be compiled (its message says why): the request fails alone, as a 400."""


class TokenizerGrammars:
    """llguidance's view of one tokenizer (built once per engine: 0.7–0.8 s for SmolLM2's 49k vocabulary), and the
    compiled grammar of each schema seen (cached: a batch of requests with one schema compiles once)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance.hf

        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self.vocab_size = vocab_size
        self._lock = threading.Lock()

    def constraint(self, schema: dict[str, Any], prompt_length: int) -> JsonConstraint:
        grammar = _grammar(json.dumps(schema))
        return JsonConstraint(self._tokenizer, grammar, self.vocab_size, prompt_length)


@lru_cache(maxsize=256)
def _grammar(schema_json: str) -> str:
    import llguidance

    try:
        return str(llguidance.LLMatcher.grammar_from_json_schema(schema_json, defaults=WHITESPACE))  # type: ignore[arg-type]
    except ValueError as invalid:
        raise GrammarError(f"the JSON schema cannot be used: {invalid}") from None


class JsonConstraint(LogitsProcessor):
    """One row's grammar state, as a logits processor: it consumes the row's newly drawn token, then
    masks every token the grammar does not allow next."""

    def __init__(self, tokenizer: Any, grammar: str, vocab_size: int, prompt_length: int) -> None:
        import llguidance

        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise GrammarError(f"the JSON schema cannot be used: {self._matcher.get_error()}")
        self._bitmask = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._prompt = prompt_length
        self._consumed = 0  # generated tokens the matcher has seen

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`input_ids`: the row's prompt and generated tokens (`[1, n]`); `scores`: `[1, vocab]`."""
        generated = input_ids[0, self._prompt + self._consumed :].tolist()
        for token in generated:
            self._matcher.consume_token(token)
        self._consumed += len(generated)
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        allowed = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: scores.shape[-1]]
        return scores.masked_fill(torch.from_numpy(allowed == 0), float("-inf"))  # type: ignore[return-value]

    @property
    def complete(self) -> bool:
        """The document is whole: nothing but the end may follow."""
        return bool(self._matcher.is_stopped())
