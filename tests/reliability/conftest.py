"""The integration suite's fixtures (moto with the template's resources, the API, the pipeline)."""

from tests.integration.conftest import call_api, make_tenant, pipeline  # noqa: F401
