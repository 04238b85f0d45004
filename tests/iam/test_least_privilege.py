"""Every function's IAM policy grants exactly the AWS calls its code makes: nothing missing, nothing more.

The calls are recorded from a run of the integration suite (`tests/iam/recorder.py` attributes each
boto3 call and presigned URL to the function whose code made it); the grants are read from
`template.yaml`. Both sides are compared as (IAM action, resource) pairs, resources by logical ID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import product
from typing import Any

import pytest

from stratus.template import REPO_ROOT, load_template, resources_of_type

SUB_ARN = re.compile(r"^\$\{(\w+)\.Arn\}(/.*)?$")


def resource_name(resource: Any) -> str:
    """A policy resource as a logical ID (+ `/index/X` or `/prefix/*`), the recorder's notation."""
    if resource == "*":  # only for an action that takes no resource the template can name
        return "*"
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        match = SUB_ARN.match(text)
        if match:
            return match.group(1) + (match.group(2) or "")
        if ":endpoint/${EndpointName}" in text:
            return "Endpoint"
    raise AssertionError(f"a policy resource this test cannot name: {resource!r}")


def granted() -> dict[str, set[tuple[str, str]]]:
    """(action, resource) pairs each function's policy allows, by the handler's package."""
    grants: dict[str, set[tuple[str, str]]] = {}
    for props in resources_of_type(load_template(), "AWS::Serverless::Function").values():
        package = props["Handler"].split(".", 1)[0]
        pairs: set[tuple[str, str]] = set()
        for policy in props.get("Policies", []):
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow" and "NotAction" not in statement
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                assert all("*" not in action for action in actions), f"{package}: wildcard action {actions}"
                names = [resource_name(resource) for resource in resources]
                prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
                if prefixes is not None:  # s3:ListBucket scoped to key prefixes: the recorder's `?s3:prefix=`
                    prefixes = prefixes if isinstance(prefixes, list) else [prefixes]
                    names = [f"{name}?s3:prefix={prefix}" for name in names for prefix in prefixes]
                else:
                    assert "Condition" not in statement, f"{package}: a condition this test cannot read"
                pairs.update(product(actions, names))
        grants[package] = pairs
    return grants


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    """The calls this session recorded, when it ran the whole integration suite (`make test`);
    otherwise the integration suite is run with the recorder in a separate process."""
    from tests.iam import recorder

    if recorder.integration_suite_recorded():
        return {package: set(pairs) for package, pairs in recorder.recorded.items()}
    target = tmp_path_factory.mktemp("iam") / "calls.json"
    env = {**os.environ, "STRATUS_IAM_RECORD": str(target)}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow"]
    command += ["-p", "no:cacheprovider", "tests/integration"]
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)  # noqa: S603
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    calls = json.loads(target.read_text())["calls"]
    return {package: {tuple(pair) for pair in pairs} for package, pairs in calls.items()}  # type: ignore[misc]


def test_every_function_is_recorded(recorded: dict[str, set[tuple[str, str]]]) -> None:
    """Every function with a policy; one without (the console's) makes no call, which the next test checks."""
    assert set(recorded) == {package for package, pairs in granted().items() if pairs}


@pytest.mark.parametrize("package", sorted(granted()))
def test_the_policy_grants_exactly_the_calls_the_code_makes(
    package: str, recorded: dict[str, set[tuple[str, str]]]
) -> None:
    calls, grants = recorded.get(package, set()), granted()[package]
    missing, unused = sorted(calls - grants), sorted(grants - calls)
    assert not missing, f"{package} calls what its policy does not allow: {missing}"
    assert not unused, f"{package}'s policy allows what its code never calls: {unused}"
