"""The OpenAPI document, generated from the routes; `docs/openapi.json` is its checked-in copy."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

OPENAPI_TITLE = "Stratus API"
OPENAPI_VERSION = "0.1.0"


def openapi_document(app: APIGatewayHttpResolver) -> str:
    return app.get_openapi_json_schema(
        title=OPENAPI_TITLE,
        version=OPENAPI_VERSION,
        summary="Metered, multi-tenant, OpenAI-compatible LLM inference",
        security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer sk-…")},
        security=[{"apiKey": []}],
    )
