"""Read `template.yaml`, the one source of truth for tables, buckets, queues and topics.

The tests and the local cloud create their resources from it, so a schema change in the
template changes what they run against.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (`!Ref X` → `{"Ref": "X"}`, `!Sub s` → `{"Fn::Sub": s}`)."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@lru_cache(maxsize=4)
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return loaded


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}


def function_environment(
    template: Mapping[str, Any], physical_names: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The Globals environment every function gets, with `!Ref`s resolved to the names given
    (resources) or to the parameters' values: `overrides` (as `sam deploy --parameter-overrides`),
    else their defaults."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    parameters = parameter_defaults(template)
    unknown = set(overrides or {}) - set(parameters)
    if unknown:
        raise KeyError(f"the template has no parameter {', '.join(sorted(unknown))}")
    parameters.update(overrides or {})
    resolved: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in physical_names:
                resolved[name] = physical_names[ref]
            elif ref in parameters:
                resolved[name] = parameters[ref]
            else:
                raise KeyError(f"{name} refers to {ref}, which was not created")
        else:
            resolved[name] = str(value)
    return resolved
