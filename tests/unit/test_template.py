"""The template is the one source of truth: these read it the way the tests and local cloud do."""

from __future__ import annotations

import pytest

from stratus.template import function_environment, load_template, resources_of_type


def test_every_table_the_code_uses_is_in_the_template() -> None:
    tables = resources_of_type(load_template(), "AWS::DynamoDB::Table")
    assert set(tables) == {
        "TenantsTable",
        "ApiKeysTable",
        "UsageTable",
        "JobsTable",
        "FilesTable",
        "BatchesTable",
        "SchedulerTable",
    }
    job_indexes = {index["IndexName"] for index in tables["JobsTable"]["GlobalSecondaryIndexes"]}
    assert job_indexes == {"SweepJobsIndex", "WaitingJobsIndex", "ActiveJobsIndex", "DispatchedJobsIndex"}
    key_indexes = {index["IndexName"] for index in tables["ApiKeysTable"]["GlobalSecondaryIndexes"]}
    assert key_indexes == {"KeyIdIndex", "TenantIndex"}
    assert tables["UsageTable"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_function_environment_resolves_refs_to_created_names_and_parameter_defaults() -> None:
    names = {
        "TenantsTable": "t",
        "ApiKeysTable": "k",
        "UsageTable": "u",
        "DataBucket": "b",
        "JobsTable": "j",
        "RequestsQueue": "https://queue",
        "FilesTable": "f",
        "BatchesTable": "bt",
        "BatchQueue": "https://bq",
        "BatchRequestsQueue": "https://brq",
        "RequestsDeadLetterQueue": "https://rdlq",
        "BatchRequestsDeadLetterQueue": "https://brdlq",
        "SchedulerTable": "s",
    }
    environment = function_environment(load_template(), names)
    assert environment["TENANTS_TABLE"] == "t"
    assert environment["API_KEYS_TABLE"] == "k"
    assert environment["USAGE_TABLE"] == "u"
    assert environment["DATA_BUCKET"] == "b"
    assert environment["PRICE_CATALOG"] == ""
    assert environment["RESERVATION_RETENTION_DAYS"] == "400"
    assert environment["JOBS_TABLE"] == "j"
    assert environment["REQUESTS_QUEUE_URL"] == "https://queue"
    assert environment["BATCH_REQUESTS_QUEUE_URL"] == "https://brq"
    assert environment["REQUESTS_DEAD_LETTER_QUEUE_URL"] == "https://rdlq"
    assert environment["RESULT_CHECK_SECONDS"] == "300"

    # parameters can be overridden, as `sam deploy --parameter-overrides` does; unknown names are refused
    overridden = function_environment(load_template(), names, {"MaxPackSize": "4", "ResultCheckSeconds": "5"})
    assert (overridden["MAX_PACK_SIZE"], overridden["RESULT_CHECK_SECONDS"]) == ("4", "5")
    with pytest.raises(KeyError, match="MaxPackSise"):
        function_environment(load_template(), names, {"MaxPackSise": "4"})


def test_functions_never_capture_responses_in_traces() -> None:
    """Responses carry freshly issued API keys; X-Ray must not record them."""
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_authorizer_cache_ttl_is_short_and_is_what_the_api_uses() -> None:
    template = load_template()
    ttl = template["Parameters"]["AuthorizerCacheTtlSeconds"]
    assert ttl["Default"] == 30
    authorizer = template["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]["KeyAuthorizer"]
    assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheTtlSeconds"}
    assert authorizer["EnableSimpleResponses"] is True


def test_results_queue_receives_both_sagemaker_topics_raw() -> None:
    subscriptions = [
        s for s in resources_of_type(load_template(), "AWS::SNS::Subscription").values() if s["Protocol"] == "sqs"
    ]
    assert {(s["TopicArn"]["Ref"], s["Endpoint"]["Fn::GetAtt"][0], s["RawMessageDelivery"]) for s in subscriptions} == {
        ("InferenceSuccessTopic", "ResultsQueue", True),
        ("InferenceErrorTopic", "ResultsQueue", True),
    }


def test_every_sqs_triggered_function_reports_partial_batch_failures() -> None:
    template = load_template()
    for logical_id, resource in template["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "SQS":
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical_id


def test_the_endpoint_scales_to_zero_and_out_from_zero_on_backlog() -> None:
    resources = load_template()["Resources"]
    target = resources["EndpointScalableTarget"]["Properties"]
    assert target["MinCapacity"] == 0 and target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    tracking = resources["BacklogTargetTracking"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["ScaleInCooldown"] == {"Ref": "ScaleInCooldownSeconds"}
    alarm = resources["HasBacklogWithoutCapacityAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "HasBacklogWithoutCapacity",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["AlarmActions"] == [{"Ref": "ScaleOutFromZero"}]
    step = resources["ScaleOutFromZero"]["Properties"]["StepScalingPolicyConfiguration"]
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    # exactly one instance, and no second one while the first is still starting: the alarm invokes
    # the policy every minute it stays in ALARM, a cold start long
    assert step["AdjustmentType"] == "ExactCapacity"
    assert step["Cooldown"] == {"Ref": "ExpectedColdStartSeconds"}
    for policy in ("BacklogTargetTracking", "ScaleOutFromZero", "HasBacklogWithoutCapacityAlarm"):
        assert resources[policy]["Condition"] == "TracksTarget"


def test_the_scheduler_runs_every_minute_and_owns_the_count_only_with_scaling_scheduler() -> None:
    template = load_template()
    resources, conditions = template["Resources"], template["Conditions"]
    scheduler = resources["SchedulerFunction"]["Properties"]
    assert scheduler["Events"]["EveryMinute"]["Properties"]["Schedule"] == "rate(1 minute)"
    assert template["Parameters"]["Scaling"]["Default"] == "Scheduler"
    assert conditions["TracksTarget"] == {
        "Fn::And": [{"Fn::Condition": "ScalesAutomatically"}, {"Fn::Equals": [{"Ref": "Scaling"}, "TargetTracking"]}]
    }
    # the scalable target exists either way (the scheduler narrows its range); only its policies depend
    assert resources["EndpointScalableTarget"]["Condition"] == "ScalesAutomatically"
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    for variable, parameter in {
        "SCALING": "Scaling",
        "AUTO_SCALING": "AutoScaling",
        "IDLE_SCALE_IN_MINUTES": "IdleScaleInMinutes",
        "FLEX_WINDOW_MINUTES": "FlexWindowMinutes",
        "INSTANCE_REQUESTS_PER_SECOND": "InstanceRequestsPerSecond",
    }.items():
        assert environment[variable] == {"Ref": parameter}


def test_async_answers_land_where_the_results_and_sweeper_functions_read_them() -> None:
    resources = load_template()["Resources"]
    config = resources["EndpointConfig"]["Properties"]["AsyncInferenceConfig"]["OutputConfig"]
    assert config["S3OutputPath"] == {"Fn::Sub": "s3://${DataBucket}/outputs/"}
    assert config["S3FailurePath"] == {"Fn::Sub": "s3://${DataBucket}/failures/"}
    assert config["NotificationConfig"]["SuccessTopic"] == {"Ref": "InferenceSuccessTopic"}
    assert config["NotificationConfig"]["ErrorTopic"] == {"Ref": "InferenceErrorTopic"}
    assert resources["Endpoint"]["Properties"]["EndpointName"] == {"Ref": "EndpointName"}


def test_every_dead_letter_queue_and_function_has_an_alarm() -> None:
    template = load_template()
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm").values()
    watched_queues = {
        d["Value"]["Fn::GetAtt"][0] for a in alarms for d in a.get("Dimensions", []) if d["Name"] == "QueueName"
    }
    dead_letter_queues = {
        q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in resources_of_type(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in q
    }
    assert watched_queues == dead_letter_queues
    watched_functions = {
        d["Value"]["Ref"]
        for a in alarms
        for m in a.get("Metrics", [])
        if "MetricStat" in m and m["MetricStat"]["Metric"]["MetricName"] == "Errors"
        for d in m["MetricStat"]["Metric"]["Dimensions"]
    }
    assert watched_functions == set(resources_of_type(template, "AWS::Serverless::Function"))


def test_data_at_rest_is_encrypted_and_the_bucket_is_private_and_tls_only() -> None:
    template = load_template()
    for props in resources_of_type(template, "AWS::DynamoDB::Table").values():
        assert props["SSESpecification"] == {"SSEEnabled": True}
    for props in resources_of_type(template, "AWS::SQS::Queue").values():
        assert props["SqsManagedSseEnabled"] is True
    topics = resources_of_type(template, "AWS::SNS::Topic")
    for props in topics.values():  # the stack's key: CloudWatch and SageMaker's role may use it to publish
        assert props["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    role = template["Resources"]["ModelExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (kms,) = [statement for statement in role if "kms:Decrypt" in statement["Action"]]
    assert (kms["Action"], kms["Resource"]) == (
        ["kms:GenerateDataKey*", "kms:Decrypt"],
        {"Fn::GetAtt": ["AlarmTopicKey", "Arn"]},
    )
    bucket = template["Resources"]["DataBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    expiring = {rule.get("Prefix") for rule in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in rule}
    assert {"requests/", "packs/", "outputs/", "failures/"} <= expiring
    (tls,) = template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_outputs_name_what_an_operator_needs() -> None:
    outputs = load_template()["Outputs"]
    assert {"ApiUrl", "DataBucketName", "RequestsQueueUrl", "BatchQueueUrl", "TenantsTableName", "EndpointName"} <= set(
        outputs
    )
