"""Test-suite guards shared by every test."""

from __future__ import annotations

import os
import socket

import pytest
import virtual_display

# Qt (the napari plugin's tests) runs without windows; set before any plugin makes the
# QApplication, which reads it once.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config):
    # Before anything makes the QApplication: see tests/virtual_display.py.
    virtual_display.start()


_LOOPBACK = ("127.", "localhost", "::1")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse every connection that leaves the machine: tests never touch the real network.

    The fake Hub of tests/fake_hub.py listens on 127.0.0.1, which stays allowed.
    """
    connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(host, str) and not host.startswith(_LOOPBACK):
            raise OSError(f"tests must not use the network (tried to connect to {address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request, monkeypatch):
    """Run as on a machine without a GPU, so ``device="auto"`` means the CPU, unless the test is
    marked ``cuda``: the expected values are CPU ones (fp32, CPU tile sizes). On a GPU machine
    nine tests failed without this (bf16 maps, CUDA tiles, "NVIDIA H200" as training hardware).
    """
    if request.node.get_closest_marker("cuda") is not None:
        return
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # for the subprocesses a test starts


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread: their tensors are tiny, so one thread is as
    fast, and far faster when other jobs hold the cores. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
