from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Unit tests run with sockets disabled: a stray call to a real endpoint fails loudly."""
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
