"""How often the real model chooses to call a tool with `tool_choice: "auto"`, and what it answers.

SmolLM2-135M-Instruct's chat template has no tools format, so the tools are shown in our system
message (`TOOLS_PROMPT` in `gpu_jobs/options.py`). This counts, over questions that want the tool
and questions that do not, how many answers become a tool call (`finish_reason: tool_calls`), at
temperature 0 and at 0.7 over `--seeds` seeds, through the same path a request takes
(`generation_requests` -> engine -> `request_result`). It is a fact about this model, not a timing.

    .venv/bin/python bench/tool_choice_auto.py [--artifact .stratus/models/smollm2-int4] [--seeds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "functions")]

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
WANTS_THE_TOOL = [
    "What is the weather in Paris?",
    "Is it raining in London right now?",
    "How warm is it in Rome today, in celsius?",
    "Tell me the current weather in Tokyo.",
]
DOES_NOT = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "What is 12 times 7?",
    "Name a primary colour.",
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gpu_jobs.loader import load_engine
    from gpu_jobs.options import generation_requests, request_result
    from gpu_jobs.settings import ServerSettings
    from stratus_core.contract import PackedRequest

    engine = load_engine(args.artifact, ServerSettings.from_environment({"STRATUS_TORCH_THREADS": str(args.threads)}))
    settings = [(0.0, None)] + [(0.7, seed) for seed in range(args.seeds)]
    report: dict[str, Any] = {}
    for label, questions in (("wants the tool", WANTS_THE_TOOL), ("does not", DOES_NOT)):
        calls, answers, examples = 0, 0, []
        for question in questions:
            for temperature, seed in settings:
                packed = PackedRequest.model_validate(
                    {
                        "job_id": "j",
                        "tenant_id": "t",
                        "kind": "chat",
                        "model": "m",
                        "messages": [{"role": "user", "content": question}],
                        "params": {
                            "max_tokens": 48,
                            "temperature": temperature,
                            "seed": seed,
                            "tools": [WEATHER],
                            "tool_choice": "auto",
                        },
                    }
                )
                result = request_result(engine, packed, engine.generate(generation_requests(engine, packed)))
                choice = result.choices[0]
                answers += 1
                calls += choice.finish_reason == "tool_calls"
                if temperature == 0.0:
                    shown = choice.tool_calls[0].function.model_dump() if choice.tool_calls else choice.text[:80]
                    examples.append({"question": question, "answer": shown})
        report[label] = {"tool_calls": calls, "answers": answers, "greedy_examples": examples}
        print(f"{label}: {calls}/{answers} answers were tool calls", flush=True)
        for example in examples:
            print(f"  {example['question']!r} -> {example['answer']}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-int4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "tool_choice_auto.json")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: report.update(run(args)))  # torch in one thread, as the server
    worker.start()
    worker.join()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
