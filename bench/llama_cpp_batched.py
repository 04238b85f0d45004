"""llama.cpp's own batched decoding on the same GGUF, for `model_throughput.py --llama-python`.

llama.cpp serves parallel sequences by putting every sequence's next token into one `llama_batch`
(one sequence id each, one shared KV cache) and decoding them in a single `llama_decode` call, the
way its `batched` example and `llama-server --parallel N` do. This script does that through
llama-cpp-python's low-level bindings: all prompts prefilled in one batch, then one decode per step
for every unfinished sequence, greedy, until each ends (an end-of-generation token) or reaches
MAX_TOKENS. It runs the same loop with PARALLEL sequences at once and with one sequence at a time
(the single stream), and prints one JSON line with both.

Runs in an interpreter that has `llama-cpp-python` (optional, not a dependency: it compiles
llama.cpp, 6 to 13 min here). Name the instruction sets of the CPU it will run on
(`grep -m1 flags /proc/cpuinfo`): a build with an instruction the CPU lacks dies with SIGILL at
the first matmul. On an Intel CPU that reports AVX-512 and AMX, keep the AMX options off (the
sandbox grants no AMX tile state, so `GGML_NATIVE=ON` dies too):

    python -m venv /work/llama-venv && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON \
      -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
      /work/llama-venv/bin/pip install numpy llama-cpp-python==0.3.36

On an AMD EPYC that reports AVX2 but no AVX-512 (2026-12-01), the same build died with SIGILL;
use `-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF` and the AMX options off.

The prompts arrive already rendered with the model's chat template, so both engines see the same
tokens.

    python bench/llama_cpp_batched.py GGUF THREADS MAX_TOKENS PARALLEL PROMPT...
"""

from __future__ import annotations

import json
import sys
import time

import llama_cpp as L
import numpy as np


def tokenize(vocab: object, text: str) -> list[int]:
    data = text.encode()
    buffer = (L.llama_token * (len(data) + 8))()
    count = L.llama_tokenize(vocab, data, len(data), buffer, len(buffer), False, True)
    return list(buffer[:count])


class Runner:
    def __init__(self, gguf: str, threads: int, parallel: int, context_per_sequence: int) -> None:
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(gguf.encode(), L.llama_model_default_params())
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        params = L.llama_context_default_params()
        params.n_ctx = parallel * context_per_sequence
        params.n_batch = params.n_ctx
        params.n_ubatch = min(512, params.n_ctx)
        params.n_seq_max = parallel
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # one cache for all sequences, as llama-server uses it
        self.ctx = L.llama_init_from_model(self.model, params)
        self.batch = L.llama_batch_init(params.n_ctx, 0, parallel)

    def _add(self, index: int, token: int, position: int, sequence: int, wanted: bool) -> None:
        self.batch.token[index] = token
        self.batch.pos[index] = position
        self.batch.n_seq_id[index] = 1
        self.batch.seq_id[index][0] = sequence
        self.batch.logits[index] = 1 if wanted else 0

    def _greedy(self, index: int) -> int:
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def generate(self, prompts: list[list[int]], max_tokens: int) -> int:
        """Decode every prompt to its end, all sequences in each step's batch; returns tokens generated."""
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        count = 0
        last: dict[int, int] = {}
        for sequence, ids in enumerate(prompts):
            for position, token in enumerate(ids):
                self._add(count, token, position, sequence, position == len(ids) - 1)
                count += 1
            last[sequence] = count - 1
        self.batch.n_tokens = count
        if L.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed on the prompts")
        positions = {sequence: len(ids) for sequence, ids in enumerate(prompts)}
        generated = {sequence: 0 for sequence in range(len(prompts))}
        active = {sequence: self._greedy(index) for sequence, index in last.items()}
        while active:
            count = 0
            rows: dict[int, int] = {}
            for sequence, token in list(active.items()):
                if L.llama_vocab_is_eog(self.vocab, token):
                    del active[sequence]
                    continue
                generated[sequence] += 1
                if generated[sequence] >= max_tokens:
                    del active[sequence]
                    continue
                self._add(count, token, positions[sequence], sequence, True)
                positions[sequence] += 1
                rows[sequence] = count
                count += 1
            if not count:
                break
            self.batch.n_tokens = count
            if L.llama_decode(self.ctx, self.batch) != 0:
                raise RuntimeError("llama_decode failed")
            active = {sequence: self._greedy(index) for sequence, index in rows.items()}
        return sum(generated.values())


def main() -> None:
    gguf, threads, max_tokens, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    texts = sys.argv[5:]
    runner = Runner(gguf, threads, parallel, context_per_sequence=512)
    prompts = [tokenize(runner.vocab, texts[i % len(texts)]) for i in range(parallel)]
    runner.generate(prompts[:2], 4)  # warm-up, untimed
    started = time.perf_counter()
    batched = runner.generate(prompts, max_tokens)
    batched_seconds = time.perf_counter() - started
    single = 0
    started = time.perf_counter()
    for ids in prompts[: max(4, len(texts))]:
        single += runner.generate([ids], max_tokens)
    single_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "parallel": parallel,
                "batched_tokens": batched,
                "batched_tok_per_s": round(batched / batched_seconds, 1),
                "single_tokens": single,
                "single_tok_per_s": round(single / single_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
