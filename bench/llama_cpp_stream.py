"""Single-stream llama.cpp on the same GGUF, for `model_throughput.py --llama-python`.

Runs in an interpreter that has `llama-cpp-python` (optional, not a dependency: it compiles
llama.cpp, 5-10 min here), e.g. `python -m venv /work/llama-venv &&
/work/llama-venv/bin/pip install llama-cpp-python==0.3.36`. Prints one JSON line.

    python bench/llama_cpp_stream.py GGUF THREADS MAX_TOKENS PROMPT...
"""

import json
import sys
import time

from llama_cpp import Llama


def main() -> None:
    gguf, threads, max_tokens, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    llm = Llama(model_path=gguf, n_threads=threads, n_ctx=2048, verbose=False, seed=0)
    llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    tokens = 0
    started = time.perf_counter()
    for prompt in prompts:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0
        )
        tokens += out["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - started
    print(json.dumps({"tokens": tokens, "seconds": round(elapsed, 3), "tok_per_s": round(tokens / elapsed, 1)}))


if __name__ == "__main__":
    main()
