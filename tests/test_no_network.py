"""The suite's network guard (tests/conftest.py) itself."""

import socket

import pytest


def test_guard_refuses_connections_off_the_machine():
    with socket.socket() as s, pytest.raises(OSError, match="must not use the network"):
        s.connect(("10.255.255.1", 443))
