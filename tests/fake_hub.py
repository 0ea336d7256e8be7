"""A fake Hugging Face Hub on 127.0.0.1: the ``resolve`` endpoint, as hf_hub_download uses it.

What huggingface_hub (2.x, ``file_download.py``) needs from
``HEAD {endpoint}/{repo}/resolve/{rev}/{file}``:

- ``X-Repo-Commit``: the 40-hex commit id (the cache's ``snapshots/<commit>/`` folder);
- ``ETag`` (or ``X-Linked-Etag`` on a redirect): the blob id (``blobs/<etag>``);
- ``Content-Length`` (or ``X-Linked-Size`` on a redirect): checked against the download;
- errors as ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).

Large (LFS) files answer like the real Hub: ``302`` to a CDN on another origin, carrying
``X-Linked-Etag`` (sha256) and ``X-Linked-Size``; the client then GETs the CDN URL without
following further. Small files answer ``200`` directly with a git-sha1 ``ETag``.

Faults per file: ``"404"``, ``"500"``, ``("slow", seconds)`` (the answer waits),
``("stall", seconds)`` (a GET's answer waits; HEAD answers at once) or ``("drip", seconds)`` (a
GET sends its headers, then one byte every ``seconds``: no read ever times out).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = ["FakeHub"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".pth")


class FakeHub:
    """Serve files as Hub repositories at ``hub.endpoint``; requests are logged in ``hub.requests``.

    Example:
        >>> with FakeHub() as hub:
        ...     hub.add_file("org/name", "config.json", b"{}", revision="v1")
        ...     hub.endpoint.startswith("http://127.0.0.1:")
        True
    """

    _stopping = threading.Event()  # set while any hub stops: dripping answers end

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.faults: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, str]] = []
        self._released = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []

    # --- content ---------------------------------------------------------------------------
    def add_file(self, repo_id: str, filename: str, content: bytes, revision: str = "main") -> None:
        self.files.setdefault((repo_id, revision), {})[filename] = bytes(content)

    def add_folder(self, repo_id: str, folder: str | Path, revision: str = "main") -> None:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                self.add_file(repo_id, path.name, path.read_bytes(), revision)

    def fault(self, repo_id: str, filename: str, what: Any) -> None:
        """Make ``filename`` of ``repo_id`` (``"*"``: every file) answer ``what``."""
        self.faults[(repo_id, filename)] = what

    @staticmethod
    def commit(repo_id: str, revision: str) -> str:
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    # --- server ----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> FakeHub:
        hub = self
        FakeHub._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        for _ in range(2):  # the Hub, and a CDN on another origin for LFS redirects
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        self._released.set()  # wake up "slow" answers
        FakeHub._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- answers ---------------------------------------------------------------------------
    def _answer(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((req.command, req.path))
        on_cdn = req.server is self._servers[1]
        parts = unquote(req.path.split("?")[0]).lstrip("/").split("/")
        if on_cdn:  # /<org>/<name>/<revision>/<file>
            repo_id, revision, filename = "/".join(parts[:2]), parts[2], "/".join(parts[3:])
        elif len(parts) >= 5 and parts[2] == "resolve":  # /<org>/<name>/resolve/<revision>/<file>
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        else:
            return self._send(req, 404, body, {"X-Error-Code": "RepoNotFound"})

        fault = self.faults.get((repo_id, filename), self.faults.get((repo_id, "*")))
        if isinstance(fault, tuple) and (fault[0] == "slow" or (fault[0] == "stall" and body)):
            self._released.wait(fault[1])
            fault = None
        drip = fault[1] if isinstance(fault, tuple) and fault[0] == "drip" and body else None
        if fault == "500":
            return self._send(req, 500, body, {}, b"Internal Server Error")
        if not any(repo == repo_id for repo, _ in self.files):
            return self._send(req, 404, body, {"X-Error-Code": "RepoNotFound"})
        files = self.files.get((repo_id, revision))
        if files is None:
            return self._send(req, 404, body, {"X-Error-Code": "RevisionNotFound"})
        commit = {"X-Repo-Commit": self.commit(repo_id, revision)}
        if fault == "404" or filename not in files:
            return self._send(req, 404, body, {"X-Error-Code": "EntryNotFound", **commit})

        content = files[filename]
        if filename.endswith(_LFS_SUFFIXES) and not on_cdn:
            sha256 = hashlib.sha256(content).hexdigest()
            location = f"{self.cdn}/{repo_id}/{revision}/{filename}"
            headers = {
                "Location": location,
                "X-Linked-Etag": f'"{sha256}"',
                "X-Linked-Size": str(len(content)),
            }
            headers["ETag"] = f'"{hashlib.sha1(b"pointer" + content).hexdigest()}"'
            return self._send(req, 302, body, {**headers, **commit})
        etag = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # git's blob id
        return self._send(req, 200, body, {"ETag": f'"{etag}"', **commit}, content, drip)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: bool,
        headers: dict[str, str],
        content: bytes = b"",
        drip: float | None = None,
    ) -> None:
        try:
            req.send_response(status)
            for key, value in headers.items():
                req.send_header(key, value)
            req.send_header("Content-Length", str(len(content)))
            req.end_headers()
            if body and content and drip:
                for i in range(len(content)):
                    req.wfile.write(content[i : i + 1])
                    req.wfile.flush()
                    if FakeHub._stopping.wait(drip):
                        return
            elif body and content:
                req.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
