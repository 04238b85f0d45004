"""The template is the one source of truth: these read it the way the tests and local cloud do."""

from __future__ import annotations

from stratus.template import function_environment, load_template, resources_of_type


def test_every_table_the_code_uses_is_in_the_template() -> None:
    tables = resources_of_type(load_template(), "AWS::DynamoDB::Table")
    assert set(tables) == {"TenantsTable", "ApiKeysTable", "UsageTable", "JobsTable", "FilesTable", "BatchesTable"}
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
    subscriptions = resources_of_type(load_template(), "AWS::SNS::Subscription").values()
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
