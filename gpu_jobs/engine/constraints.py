"""Constrained decoding: a row's next token is drawn only from tokens its grammar allows.

Structured output (`response_format` json_object / json_schema) and forced tool calls
(`tool_choice` required or named) become a JSON schema; llguidance compiles it against the model's
tokenizer and, before every decoding step, says which tokens may come next (a bitmask over the
vocabulary). The mask is applied as a transformers `LogitsProcessor`, after penalties and bias and
before temperature and top-p, so the output is schema-valid **by construction** at any temperature:
every token drawn keeps the text a prefix of a valid document, and the end token is allowed only
once the document is complete. A row that reaches `max_tokens` first ends with `length` and an
incomplete document (it says so; it is never passed off as valid).

Why llguidance (measured in `bench/grammar_overhead.py`, results in `bench/RESULTS.md`): it compiles
a schema against the 49,152-token vocabulary in milliseconds and computes a mask in tens of
microseconds, has no Python dependencies (a Rust extension: nothing else enters the container),
and is what vLLM, SGLang and llama.cpp use; xgrammar pulls triton into the image, and
outlines-core builds a whole index per schema up front.
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
    """llguidance's view of one tokenizer (built once per engine: ~1 s for a 49k vocabulary), and the
    compiled grammar of each schema seen (cached: a batch of requests with one schema compiles once)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance.hf

        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self.vocab_size = vocab_size
        self._lock = threading.Lock()

    def constraint(self, schema: dict[str, Any], prompt_length: int) -> JsonConstraint:
        grammar = _grammar(json.dumps(schema, sort_keys=True))
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
