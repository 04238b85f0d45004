"""Constrained decoding's cost inside our batcher, per grammar library, in one run.

For each library — llguidance (what `gpu_jobs/engine/constraints.py` uses), xgrammar and
outlines-core — this measures, on the real model and tokenizer:

- setup: preparing the tokenizer for the library (once per engine);
- compile: turning each schema into a grammar for that tokenizer (once per distinct schema; the
  engine caches it);
- per token: the engine's decode step with 8 rows in the batch, every row constrained by the
  schema, against the same 8 rows unconstrained (same prompts, seeds and max_tokens), interleaved,
  median over `--rounds`. Only steps where all 8 rows are still decoding count: rows end at
  different times (a small schema's document is whole after ~20 tokens, an unconstrained answer
  ends at its end token), and a batch with fewer rows costs more per token, which would otherwise be
  counted as the grammar's cost. Since every row decodes one token per step, the ratio of step
  times is the per-token overhead;
- admission: the prefill of the 8 rows, where each constrained row also builds its matcher;
- wall per token: the whole `generate` divided by the tokens it made (occupancy included: shown,
  not the headline);
- mask: the library's own time per row and token (consume the drawn token, compute the next mask,
  apply it).

Each library is plugged into the engine through the same `constraint(schema, prompt_length)` call
the engine makes, as a transformers `LogitsProcessor`, so the three run the same decoding loop.
Run alone (the machine has 2 cores):

    .venv/bin/python bench/grammar_overhead.py [--artifact .stratus/models/smollm2-int4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "functions")]

from gpu_jobs.engine.base import GenerationRequest  # noqa: E402
from gpu_jobs.engine.constraints import TokenizerGrammars  # noqa: E402
from gpu_jobs.loader import load_engine  # noqa: E402
from gpu_jobs.settings import ServerSettings  # noqa: E402

SCHEMAS: dict[str, dict[str, Any]] = {
    "order (enum, integer, boolean, short string)": {
        "type": "object",
        "properties": {
            "city": {"enum": ["Paris", "Rome", "Oslo", "Lisbon"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 99},
            "express": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 40},
        },
        "required": ["city", "count", "express", "note"],
        "additionalProperties": False,
    },
    "tool call (name + nested arguments)": {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 40},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "array", "items": {"type": "integer"}, "maxItems": 7},
                },
                "required": ["city", "unit", "days"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    },
    "long text field (never finishes early)": {
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 2000}},
        "required": ["story"],
        "additionalProperties": False,
    },
}
PROMPT = "Answer in JSON. Describe an order for a shop, a weather query, or tell a story."


class Timed:
    """Wall time spent inside the library's processors (all rows, all tokens)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0


class LlguidanceGrammars:
    def __init__(self, tokenizer: Any, vocab_size: int, timed: Timed) -> None:
        self._grammars = TokenizerGrammars(tokenizer, vocab_size)
        self._timed = timed

    def compile(self, schema: dict[str, Any]) -> Any:
        from gpu_jobs.engine.constraints import _grammar

        return _grammar(json.dumps(schema))

    def constraint(self, schema: dict[str, Any], prompt_length: int) -> LogitsProcessor:
        return _TimedProcessor(self._grammars.constraint(schema, prompt_length), self._timed)


class _TimedProcessor(LogitsProcessor):
    def __init__(self, inner: Any, timed: Timed) -> None:
        self._inner, self._timed = inner, timed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = time.perf_counter()
        out = self._inner(input_ids, scores)
        self._timed.seconds += time.perf_counter() - started
        self._timed.calls += 1
        return out  # type: ignore[no-any-return]


class XGrammarGrammars:
    def __init__(self, tokenizer: Any, vocab_size: int, timed: Timed) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(self._info, cache_enabled=True)
        self._vocab = vocab_size
        self._timed = timed

    def compile(self, schema: dict[str, Any]) -> Any:
        return self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)

    def constraint(self, schema: dict[str, Any], prompt_length: int) -> LogitsProcessor:
        return _TimedProcessor(
            _XGrammarConstraint(self._xgr, self.compile(schema), self._vocab, prompt_length), self._timed
        )


class _XGrammarConstraint(LogitsProcessor):
    def __init__(self, xgr: Any, compiled: Any, vocab_size: int, prompt_length: int) -> None:
        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._prompt, self._consumed = prompt_length, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for token in input_ids[0, self._prompt + self._consumed :].tolist():
            self._matcher.accept_token(token)
            self._consumed += 1
        self._matcher.fill_next_token_bitmask(self._bitmask)
        masked = scores.clone()
        self._xgr.apply_token_bitmask_inplace(masked, self._bitmask)
        return masked  # type: ignore[return-value]


class OutlinesCoreGrammars:
    def __init__(self, tokenizer: Any, vocab_size: int, timed: Timed) -> None:
        from outlines_core import Vocabulary
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
        special = set(tokenizer.all_special_ids)
        tokens: dict[bytes, list[int]] = {}
        for token, token_id in tokenizer.get_vocab().items():
            if token_id not in special and token_id < vocab_size:
                tokens.setdefault(bytes(to_byte[char] for char in token), []).append(token_id)
        self._vocabulary = Vocabulary(tokenizer.eos_token_id, tokens)
        self._vocab = vocab_size
        self._indexes: dict[str, Any] = {}
        self._timed = timed

    def compile(self, schema: dict[str, Any]) -> Any:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        key = json.dumps(schema)
        if key not in self._indexes:
            self._indexes[key] = Index(build_regex_from_schema(key, whitespace_pattern=""), self._vocabulary)
        return self._indexes[key]

    def constraint(self, schema: dict[str, Any], prompt_length: int) -> LogitsProcessor:
        return _TimedProcessor(_OutlinesConstraint(self.compile(schema), self._vocab, prompt_length), self._timed)


class _OutlinesConstraint(LogitsProcessor):
    def __init__(self, index: Any, vocab_size: int, prompt_length: int) -> None:
        from outlines_core import Guide

        self._guide = Guide(index)
        self._bitmask = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._prompt, self._consumed = prompt_length, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for token in input_ids[0, self._prompt + self._consumed :].tolist():
            self._guide.advance(token, return_tokens=False)
            self._consumed += 1
        self._guide.write_mask_into(self._bitmask.ctypes.data, self._bitmask.size, 4)
        allowed = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: scores.shape[-1]]
        return scores.masked_fill(torch.from_numpy(allowed == 0), float("-inf"))  # type: ignore[return-value]


LIBRARIES = {"llguidance": LlguidanceGrammars, "xgrammar": XGrammarGrammars, "outlines-core": OutlinesCoreGrammars}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    engine = load_engine(args.artifact, ServerSettings.from_environment({"STRATUS_TORCH_THREADS": str(args.threads)}))
    tokenizer, vocab = engine._tokenizer, engine._vocab
    prompt = engine.render_chat([{"role": "user", "content": PROMPT}])

    def requests(schema: dict[str, Any] | None) -> list[GenerationRequest]:
        return [
            GenerationRequest(prompt=prompt, max_tokens=args.max_tokens, temperature=0.8, seed=seed, schema=schema)
            for seed in range(args.batch)
        ]

    steps: list[tuple[int, float]] = []  # (rows in the batch, seconds) of each decode step
    admissions: list[float] = []
    step, admit = engine.step, engine.admit

    def timed_step(batch: Any) -> None:
        rows, started = len(batch.rows), time.perf_counter()
        step(batch)
        steps.append((rows, time.perf_counter() - started))

    def timed_admit(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        batch = admit(*a, **k)
        admissions.append(time.perf_counter() - started)
        return batch

    engine.step, engine.admit = timed_step, timed_admit  # type: ignore[method-assign]

    def full_steps() -> list[float]:
        full = [seconds for rows, seconds in steps if rows == args.batch]
        steps.clear()
        return full

    engine.generate(requests(None))  # warm-up, untimed

    libraries: dict[str, Any] = {}
    for name, factory in LIBRARIES.items():
        timed = Timed()
        started = time.perf_counter()
        grammars = factory(tokenizer, vocab, timed)
        setup = time.perf_counter() - started
        compiles = {}
        for label, schema in SCHEMAS.items():
            started = time.perf_counter()
            grammars.compile(schema)
            compiles[label] = round((time.perf_counter() - started) * 1000, 1)
        libraries[name] = {"grammars": grammars, "timed": timed, "setup_s": round(setup, 2), "compile_ms": compiles}
        print(f"{name}: tokenizer setup {setup:.2f} s; compile ms {compiles}", flush=True)

    results: dict[str, Any] = {}
    for label, schema in SCHEMAS.items():
        per_token: dict[str, list[float]] = {"unconstrained": [], **{name: [] for name in libraries}}
        step_s: dict[str, list[float]] = {"unconstrained": [], **{name: [] for name in libraries}}
        admit_s: dict[str, list[float]] = {"unconstrained": [], **{name: [] for name in libraries}}
        mask_us: dict[str, list[float]] = {name: [] for name in libraries}
        valid: dict[str, int] = {name: 0 for name in libraries}
        finished: dict[str, int] = {name: 0 for name in libraries}
        for _ in range(args.rounds):
            engine._grammars = None
            full_steps(), admissions.clear()
            started = time.perf_counter()
            out = engine.generate(requests(None))
            per_token["unconstrained"].append((time.perf_counter() - started) / sum(r.completion_tokens for r in out))
            step_s["unconstrained"] += full_steps()
            admit_s["unconstrained"] += admissions
            for name, library in libraries.items():
                engine._grammars = library["grammars"]
                timed = library["timed"]
                timed.seconds, timed.calls = 0.0, 0
                admissions.clear()
                started = time.perf_counter()
                out = engine.generate(requests(schema))
                elapsed = time.perf_counter() - started
                step_s[name] += full_steps()
                admit_s[name] += admissions
                tokens = sum(r.completion_tokens for r in out)
                per_token[name].append(elapsed / tokens)
                mask_us[name].append(timed.seconds / max(timed.calls, 1) * 1e6)
                for r in out:
                    if r.finish_reason == "stop":
                        finished[name] += 1
                        try:
                            json.loads(r.text)
                            valid[name] += 1
                        except ValueError:
                            pass
        base = min(per_token["unconstrained"])
        base_step = statistics.median(step_s["unconstrained"])
        row = {
            "unconstrained_step_ms": round(base_step * 1000, 2),
            "unconstrained_admission_ms": round(statistics.median(admit_s["unconstrained"]) * 1000, 1),
            "unconstrained_wall_ms_per_token": round(base * 1000, 2),
            "libraries": {
                name: {
                    "full_batch_steps": len(step_s[name]),
                    "step_ms": round(statistics.median(step_s[name]) * 1000, 2),
                    "per_token_vs_unconstrained": round(statistics.median(step_s[name]) / base_step, 3),
                    "admission_ms": round(statistics.median(admit_s[name]) * 1000, 1),
                    "wall_ms_per_token": round(min(per_token[name]) * 1000, 2),
                    "wall_vs_unconstrained": round(min(per_token[name]) / base, 3),
                    "mask_us_per_token": round(statistics.median(mask_us[name]), 1),
                    "finished_stop": finished[name],
                    "finished_and_parsed": valid[name],
                }
                for name in libraries
            },
        }
        results[label] = row
        print(
            f"\n{label}: unconstrained step of {args.batch} rows {base_step * 1000:.2f} ms "
            f"({len(step_s['unconstrained'])} full-batch steps), admission {row['unconstrained_admission_ms']} ms, "
            f"wall {base * 1000:.2f} ms/token",
            flush=True,
        )
        for name, figures in row["libraries"].items():
            print(
                f"  {name:>13}: step {figures['step_ms']:.2f} ms = {figures['per_token_vs_unconstrained']:.3f}x "
                f"({figures['full_batch_steps']} steps), admission {figures['admission_ms']} ms, "
                f"wall {figures['wall_ms_per_token']:.2f} ms/token = {figures['wall_vs_unconstrained']:.3f}x, "
                f"mask {figures['mask_us_per_token']:.0f} us/row-token, "
                f"{figures['finished_and_parsed']}/{figures['finished_stop']} finished documents parse",
                flush=True,
            )
    engine._grammars = None
    engine.step, engine.admit = step, admit  # type: ignore[method-assign]
    return {
        "artifact": args.artifact.name,
        "threads": args.threads,
        "batch": args.batch,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "setup_s": {name: lib["setup_s"] for name, lib in libraries.items()},
        "compile_ms": {name: lib["compile_ms"] for name, lib in libraries.items()},
        "schemas": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-int4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "grammar_overhead.json")
    args = parser.parse_args()
    report: dict[str, Any] = {}

    def work() -> None:  # torch off the main thread, as in the server (gpu_jobs/batcher.py says why)
        report.update(run(args))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
