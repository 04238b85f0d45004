"""The local cloud imports each function with its own `POWERTOOLS_SERVICE_NAME`, as Lambda runs it:
functions in one process no longer share a Powertools logger, so one function's invocation context
(function name, correlation id) never appears on another's log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from stratus.template import REPO_ROOT

PROBE = """
import importlib, json
import api.app, sweeper.app, scheduler.app  # imported first under the process's name, as before a deploy
from stratus.localcloud.functions import handler
from stratus.template import load_template
template = load_template()
found = {}
for logical_id in ("ApiFunction", "SweeperFunction", "SchedulerFunction"):
    handler(template, logical_id)
    module = importlib.import_module(template["Resources"][logical_id]["Properties"]["Handler"].rpartition(".")[0])
    found[logical_id] = module.logger.service
import os
found["after"] = os.environ.get("POWERTOOLS_SERVICE_NAME")
print(json.dumps(found))
"""


def test_each_function_gets_its_own_service_name_and_logger() -> None:
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "stratus", "AWS_DEFAULT_REGION": "us-east-1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)])
    out = subprocess.run(  # noqa: S603 - a fresh interpreter: this one imported the handlers already
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "ApiFunction": "stratus-api",
        "SweeperFunction": "stratus-sweeper",
        "SchedulerFunction": "stratus-scheduler",
        "after": "stratus",  # the process's own setting is left as it was
    }
