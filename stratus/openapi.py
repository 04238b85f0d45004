"""Print the API's OpenAPI document, generated from the API function's routes.

`make openapi` writes it to `docs/openapi.json`; a test fails when the two differ.
"""

from __future__ import annotations

import sys


def generate() -> str:
    from api.app import app
    from api.openapi import openapi_document

    return openapi_document(app)


if __name__ == "__main__":
    sys.stdout.write(generate())
