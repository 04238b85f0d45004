"""Every alarm, scaling metric and alarm topic in the template watches a metric the way AWS publishes it.

CloudWatch matches a metric by namespace, name and the *exact* set of its dimensions: an alarm that
names one dimension too few (or too many) watches a metric that never gets data, and with
`TreatMissingData: notBreaching` it never fires, silently. A threshold in the wrong unit fires never
(or always). Neither is visible to cfn-lint or moto, so the template is checked here against
`PUBLISHED`: what each metric is published with, from AWS's documentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from stratus.template import load_template, resources_of_type


@dataclass(frozen=True)
class Published:
    dimensions: tuple[frozenset[str], ...]  # each set of dimension names the metric is published with
    unit: str


def dims(*names: str) -> frozenset[str]:
    return frozenset(names)


ENDPOINT = dims("EndpointName")
VARIANT = dims("EndpointName", "VariantName")
PUBLISHED: dict[tuple[str, str], Published] = {
    # Asynchronous endpoints (SageMaker Developer Guide, "Monitoring asynchronous endpoints"): "The
    # following metrics are published with the EndpointName dimension" / "... with the EndpointName
    # and VariantName dimensions". Invocations is not published for async endpoints.
    ("AWS/SageMaker", "ApproximateBacklogSize"): Published((ENDPOINT,), "Count"),
    ("AWS/SageMaker", "ApproximateBacklogSizePerInstance"): Published((ENDPOINT,), "Count"),
    ("AWS/SageMaker", "ApproximateAgeOfOldestRequest"): Published((ENDPOINT,), "Seconds"),
    ("AWS/SageMaker", "HasBacklogWithoutCapacity"): Published((ENDPOINT,), "Count"),
    ("AWS/SageMaker", "InvocationFailures"): Published((VARIANT,), "Count"),
    ("AWS/SageMaker", "ExpiredRequests"): Published((VARIANT,), "Count"),
    ("AWS/SageMaker", "NotificationFailures"): Published((VARIANT,), "Count"),
    # Instance metrics ("Amazon SageMaker AI metrics in CloudWatch": EndpointName, VariantName)
    ("/aws/sagemaker/Endpoints", "CPUUtilization"): Published((VARIANT,), "Percent"),
    # SQS: "The only dimension that Amazon SQS sends to CloudWatch is QueueName"
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): Published((dims("QueueName"),), "Count"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): Published((dims("QueueName"),), "Seconds"),
    # Lambda: by FunctionName (all versions), Resource, ExecutedVersion
    ("AWS/Lambda", "Errors"): Published((dims("FunctionName"), dims("FunctionName", "Resource")), "Count"),
    ("AWS/Lambda", "Throttles"): Published((dims("FunctionName"), dims("FunctionName", "Resource")), "Count"),
    # HTTP APIs ("Monitoring HTTP API metrics"): 4xx, 5xx, Count by ApiId or ApiId and Stage
    ("AWS/ApiGateway", "5xx"): Published((dims("ApiId"), dims("ApiId", "Stage")), "Count"),
    ("AWS/ApiGateway", "4xx"): Published((dims("ApiId"), dims("ApiId", "Stage")), "Count"),
    ("AWS/ApiGateway", "Count"): Published((dims("ApiId"), dims("ApiId", "Stage")), "Count"),
    # Ours: Powertools' Metrics publishes with the `service` dimension (POWERTOOLS_SERVICE_NAME)
    ("Stratus", "NotificationsRecovered"): Published((dims("service"),), "Count"),
    ("Stratus", "JobsSwept"): Published((dims("service"),), "Count"),
    ("Stratus", "SweepErrors"): Published((dims("service"),), "Count"),
    ("Stratus", "TokensBilled"): Published((dims("service"),), "Count"),
    ("Stratus", "JobsFinished"): Published((dims("service"),), "Count"),
    ("Stratus", "RequestsDispatched"): Published((dims("service"),), "Count"),
    # the scheduler function's (functions/scheduler/app.py)
    ("Stratus", "SchedulerRuns"): Published((dims("service"),), "Count"),
    ("Stratus", "SchedulerBlind"): Published((dims("service"),), "Count"),
    ("Stratus", "SchedulerErrors"): Published((dims("service"),), "Count"),
    ("Stratus", "DesiredInstances"): Published((dims("service"),), "Count"),
    ("Stratus", "InServiceInstances"): Published((dims("service"),), "Count"),
    ("Stratus", "HeldRequests"): Published((dims("service"),), "Count"),
    ("Stratus", "ReleasedRequests"): Published((dims("service"),), "Count"),
}
TO_MINUTES = re.compile(r"^(\w+) / 60$")


def published(namespace: str, name: str, dimensions: list[dict[str, Any]]) -> Published:
    key = (namespace, name)
    assert key in PUBLISHED, f"{namespace} {name}: not in the table of published metrics (add it, from AWS's docs)"
    names = frozenset(d["Name"] for d in dimensions)
    assert names in PUBLISHED[key].dimensions, f"{namespace} {name} is never published with dimensions {set(names)}"
    return PUBLISHED[key]


def alarm_unit(alarm: dict[str, Any]) -> str:
    """The unit of what the alarm compares with its threshold (checking every metric on the way)."""
    if "MetricName" in alarm:
        return published(alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions", [])).unit
    units = {}
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            units[query["Id"]] = published(metric["Namespace"], metric["MetricName"], metric.get("Dimensions", [])).unit
    (returned,) = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
    if "MetricStat" in returned:
        return units[returned["Id"]]
    scaled = TO_MINUTES.match(returned["Expression"])
    if scaled:
        assert units[scaled.group(1)] == "Seconds", f"{returned['Expression']}: only seconds become minutes"
        return "Minutes"
    return "Count"  # sums, rates and fills of counts


def threshold_unit(threshold: Any, parameters: dict[str, Any]) -> str | None:
    """The unit a parameter's name states (`…Minutes`, `…Seconds`); None for a literal."""
    if isinstance(threshold, dict):
        (name,) = re.findall(r"\w+", str(threshold.get("Ref") or threshold.get("Fn::Sub")))
        assert name in parameters
        return next((unit for unit in ("Minutes", "Seconds") if name.endswith(unit)), "Count")
    return None


ALARMS = resources_of_type(load_template(), "AWS::CloudWatch::Alarm")


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_watches_a_published_metric_and_compares_it_in_its_unit(name: str) -> None:
    alarm = ALARMS[name]
    unit = alarm_unit(alarm)
    stated = threshold_unit(alarm["Threshold"], load_template()["Parameters"])
    if stated is not None:
        assert stated == unit, f"{name} compares {unit} with a threshold in {stated}"


def test_a_threshold_in_minutes_on_a_metric_in_seconds_is_caught() -> None:
    """The check itself: the JobsStuck alarm as it was (ApproximateAgeOfOldestRequest against minutes)."""
    before = {
        "Namespace": "AWS/SageMaker",
        "MetricName": "ApproximateAgeOfOldestRequest",
        "Dimensions": [{"Name": "EndpointName", "Value": "e"}],
        "Threshold": {"Fn::Sub": "${StuckJobMinutes}"},
    }
    assert alarm_unit(before) == "Seconds"
    assert threshold_unit(before["Threshold"], load_template()["Parameters"]) == "Minutes"
    with pytest.raises(AssertionError, match="never published with dimensions"):
        published("AWS/SageMaker", "InvocationFailures", [{"Name": "EndpointName", "Value": "e"}])


def test_the_scaling_policies_track_published_metrics() -> None:
    template = load_template()
    for policy in resources_of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values():
        spec = policy.get("TargetTrackingScalingPolicyConfiguration", {}).get("CustomizedMetricSpecification")
        if spec:
            published(spec["Namespace"], spec["MetricName"], spec["Dimensions"])


def test_the_dashboards_metrics_are_published_ones() -> None:
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    rows = re.findall(r'\["(AWS/[\w]+|Stratus|/aws/sagemaker/Endpoints)", "(\w+)", ((?:"[\w${}.]+", ?)+)', body)
    assert len(rows) >= 5
    for namespace, name, rest in rows:
        values = re.findall(r'"([^"]+)"', rest)
        published(namespace, name, [{"Name": n} for n in values[0::2]])


def test_cloudwatch_may_publish_to_the_alarm_topic() -> None:
    """A topic encrypted with the AWS managed alias/aws/sns key never receives an alarm: CloudWatch
    must be allowed to use a customer managed key (SNS Developer Guide, "Compatibility with AWS services")."""
    resources = load_template()["Resources"]
    key = resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert key == {"Ref": "AlarmTopicKey"}
    statements = resources["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    notifying = [a for a in ALARMS.values() if {"Ref": "AlarmTopic"} in a["AlarmActions"]]
    assert len(notifying) == len(ALARMS) - 1  # all but the one that scales out from zero
