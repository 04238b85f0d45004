"""Report how many generated requests the fuzzing run sent."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.fuzz.test_openapi_fuzz import CASES

    if CASES["sent"]:
        terminalreporter.write_line(f"schemathesis: {CASES['sent']} generated requests sent")
