"""Test-suite guards shared by every test."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Qt (the napari plugin's tests) runs without windows; set before any plugin makes the
# QApplication, which reads it once.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _start_virtual_display() -> None:
    """An X display for napari's OpenGL canvas, before anything creates the QApplication.

    The offscreen platform takes OpenGL from the X display it finds when the QApplication is
    made; made without one, napari's canvas gets no OpenGL context. So the display is started
    here, at start-up, and only when the napari tests can run (napari installed, Xvfb present).
    """
    if os.environ.get("DISPLAY") or not sys.platform.startswith("linux"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None or importlib.util.find_spec("napari") is None:
        return
    # A display number of this process's own, so a server of an earlier run still shutting
    # down is never mistaken for ours. Its messages go to a log file, kept for a failing run.
    display = 100 + os.getpid() % 30000
    log = open(os.path.join(tempfile.gettempdir(), f"liteunet-tests-xvfb-{os.getpid()}.log"), "w")
    server = subprocess.Popen(
        [xvfb, f":{display}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    # Qt keeps its X connection until this process exits, and losing it then would abort the
    # process: a small shell outlives it and stops Xvfb once this process is gone.
    subprocess.Popen(
        ["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill {server.pid}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    # Ready when its socket accepts a connection (at most 30 s). (Xvfb's -displayfd was not
    # reliable here: the server sometimes could not write to the inherited pipe and quit.)
    path = f"/tmp/.X11-unix/X{display}"
    for _ in range(300):
        if server.poll() is not None:
            return
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(path)
        except OSError:
            time.sleep(0.1)
            continue
        os.environ["DISPLAY"] = f":{display}"
        return


def pytest_configure(config):
    _start_virtual_display()

import pytest

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
