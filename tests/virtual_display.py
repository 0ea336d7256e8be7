"""An X display with working OpenGL for napari's canvas in the tests (Xvfb + Mesa).

The offscreen Qt platform takes OpenGL from the X display it finds when the QApplication is
made; made without one, napari's canvas gets no OpenGL context and every viewer test errors.
So ``tests/conftest.py`` calls :func:`start` at pytest start-up, before anything creates the
QApplication. A server that answers its socket is not enough: a small Qt program must also get
an OpenGL context from it (a fresh CI machine once gave napari none). When that fails twice,
``DISPLAY`` stays unset and the environment variable :data:`REASON_VARIABLE` says why, with
the server's log, for the napari tests' skip message.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REASON_VARIABLE = "LITEUNET_TESTS_NO_OPENGL"  # why the napari tests cannot draw, when they cannot

# The probe does what napari's canvas does first: make a context current and read a GL string.
_PROBE = """
import sys
from qtpy.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext
app = QGuiApplication(sys.argv[:1])
surface = QOffscreenSurface()
surface.create()
context = QOpenGLContext()
if not context.create() or not context.makeCurrent(surface):
    sys.exit("Qt made no OpenGL context on this display")
from OpenGL import GL
version = GL.glGetString(GL.GL_VERSION)
if not version:
    sys.exit("an OpenGL context with no GL_VERSION")
print(version.decode())
"""


def _log_tail(path: str, lines: int = 8) -> str:
    try:
        with open(path) as handle:
            return " | ".join(handle.read().strip().splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no log)"


def _serve(xvfb: str, display: int, log_path: str) -> subprocess.Popen | None:
    """Start Xvfb on ``display``; the server once its socket answers (30 s at most), else None."""
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [xvfb, f":{display}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # Qt keeps its X connection until this process exits, and losing it then would abort the
    # process: a small shell outlives it and stops Xvfb once this process is gone.
    subprocess.Popen(
        ["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill {server.pid}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    # Ready when its socket accepts a connection. (Xvfb's -displayfd was not reliable here: the
    # server sometimes could not write to the inherited pipe and quit.)
    path = f"/tmp/.X11-unix/X{display}"
    for _ in range(300):
        if server.poll() is not None:
            return None
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(path)
        except OSError:
            time.sleep(0.1)
            continue
        return server
    server.kill()
    return None


def opengl_problem(display: str) -> str | None:
    """None when a Qt program gets an OpenGL context from ``display``, else what went wrong."""
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="offscreen")
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                               text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "the OpenGL probe did not answer in 60 s"
    if probe.returncode == 0:
        return None
    lines = [line for line in probe.stderr.strip().splitlines() if "XDG_RUNTIME_DIR" not in line]
    return lines[-1][:200] if lines else f"the OpenGL probe exited with {probe.returncode}"


def start(attempts: int = 2) -> None:
    """Set ``DISPLAY`` to a virtual X display whose OpenGL works, when the napari tests can run.

    Does nothing outside Linux, with a display already set, without napari or without Xvfb.
    """
    if os.environ.get("DISPLAY") or not sys.platform.startswith("linux"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None or importlib.util.find_spec("napari") is None:
        return
    problems = []
    for attempt in range(attempts):
        # A display number of this process's own, so a server of an earlier run still shutting
        # down is never mistaken for ours. Its messages go to a log file, kept for a failing run.
        display = 100 + (os.getpid() * attempts + attempt) % 30000
        log_path = os.path.join(tempfile.gettempdir(), f"liteunet-tests-xvfb-{display}.log")
        server = _serve(xvfb, display, log_path)
        if server is None:
            problems.append(f"Xvfb :{display} did not start (log: {_log_tail(log_path)})")
            continue
        problem = opengl_problem(f":{display}")
        if problem is None:
            os.environ["DISPLAY"] = f":{display}"
            return
        server.kill()
        problems.append(f"Xvfb :{display} gave no OpenGL: {problem} (log: {_log_tail(log_path)})")
    os.environ[REASON_VARIABLE] = "; ".join(problems)
