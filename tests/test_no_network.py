"""The suite's guards (tests/conftest.py) themselves: no network, no GPU unless asked for."""

import socket

import pytest


def test_guard_refuses_connections_off_the_machine():
    with socket.socket() as s, pytest.raises(OSError, match="must not use the network"):
        s.connect(("10.255.255.1", 443))


def test_unmarked_tests_see_no_gpu_even_on_a_gpu_machine():
    """The GPU guard of tests/conftest.py: device="auto" is the CPU outside tests marked cuda."""
    import os
    import subprocess
    import sys

    from liteunet._device import resolve_device

    assert resolve_device("auto").type == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True, check=True
    )
    assert child.stdout.strip() == "False"
