"""A fake Hugging Face hub on 127.0.0.1, to drive the real huggingface_hub client in tests and benchmarks.

It answers the requests ``HfApi.model_info``, ``list_repo_tree`` and ``snapshot_download`` make, shaped
like the hub's own responses (``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``, ``X-Error-Code``, ranges),
from the files under ``data/``. Knobs make it gate a model, reject a token, cut a download off or hold it mid-file, and
every request is logged so a test can tell when no network was touched. It never sends Xet headers,
so the client takes the plain HTTP path. A file too large to hold in memory is published as a
:class:`DiskFile` and streamed from disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

DATA = Path(__file__).resolve().parent / "data"
LFS_SUFFIXES = (".safetensors", ".bin")
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = (
    ("info", re.compile(rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)")),
    ("tree", re.compile(rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)")),
    ("file", re.compile(rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)")),
)


def fixture_files(name: str) -> dict[str, bytes]:
    """The files of the fixture model NAME under ``data/``, by path in the repo."""
    root = DATA / name
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file()}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class DiskFile:
    """A weights file served from disk (benchmarks' multi-GB files); hashed once, when it is made."""

    path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> DiskFile:
        with path.open("rb") as file:
            return cls(path, path.stat().st_size, hashlib.file_digest(file, "sha256").hexdigest())


@dataclass(frozen=True)
class Request:
    """One request the fake answered: enough to assert what the client did."""

    method: str
    path: str
    range: str | None
    token: str | None


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes | DiskFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    granted: set[str] = field(default_factory=set)


@dataclass
class Cut:
    path: str
    after_bytes: int
    reset: bool


@dataclass
class Hold:
    """A download paused after AFTER_BYTES: ``reached`` is set once they are sent, the rest follows ``release``."""

    path: str
    after_bytes: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    taken: bool = False


class HubFake:
    """The fake hub: publish repos, set knobs, read ``requests``; ``url`` is its endpoint."""

    def __init__(self, host: str = "127.0.0.1", *, url_host: str | None = None) -> None:
        """Listen on HOST (a free port); ``url`` names URL_HOST, e.g. the address containers reach HOST by."""
        self.repos: dict[str, FakeRepo] = {}
        self.valid_tokens: set[str] = set()
        self.requests: list[Request] = []
        self.cuts: list[Cut] = []
        self.holds: list[Hold] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self.url = f"http://{url_host or host}:{self._server.server_address[1]}"

    def start(self) -> HubFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self._server.shutdown()
        self._server.server_close()

    def publish(self, repo_id: str, files: dict[str, bytes | DiskFile], *, branch: str = "main",
                gated: bool = False) -> str:
        """Commit FILES as the whole content of REPO_ID and point BRANCH at it; returns the commit sha."""
        repo = self.repos.setdefault(repo_id, FakeRepo())
        repo.gated = repo.gated or gated
        digest = hashlib.sha1(repo_id.encode() + json.dumps(len(repo.commits)).encode())
        for path in sorted(files):
            content = files[path]
            digest.update(path.encode() + b"\0" + (content.sha256.encode() if isinstance(content, DiskFile)
                                                    else content))
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        return sha

    def cut(self, path: str, after_bytes: int, *, reset: bool = True) -> None:
        """Drop the next GET of PATH after AFTER_BYTES of its body: a reset, or a plain close if not RESET."""
        self.cuts.append(Cut(path, after_bytes, reset))

    def hold(self, path: str, after_bytes: int) -> Hold:
        """Pause the next GET of PATH after AFTER_BYTES of its body until the returned hold is released."""
        hold = Hold(path, after_bytes)
        self.holds.append(hold)
        return hold

    def requests_for(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def take_hold(self, path: str) -> Hold | None:
        with self._lock:
            for hold in self.holds:
                if hold.path == path and not hold.taken:
                    hold.taken = True
                    return hold
        return None

    def take_cut(self, path: str) -> Cut | None:
        with self._lock:
            for cut in self.cuts:
                if cut.path == path:
                    self.cuts.remove(cut)
                    return cut
        return None


def _entry(path: str, data: bytes | DiskFile) -> dict:
    """A file as the hub's tree and model-info APIs describe it (LFS for weights and disk files)."""
    if isinstance(data, DiskFile):
        size, sha256 = data.size, data.sha256
    elif not path.endswith(LFS_SUFFIXES):
        return {"path": path, "size": len(data), "oid": git_blob_id(data), "lfs": None}
    else:
        size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return {"path": path, "size": size, "oid": git_blob_id(pointer),
            "lfs": {"oid": sha256, "sha256": sha256, "size": size, "pointerSize": len(pointer)}}


def _handler(hub: HubFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            raw_path = urlsplit(self.path).path
            path = unquote(raw_path)
            authorization = self.headers.get("Authorization", "")
            token = authorization.removeprefix("Bearer ") or None
            hub.log(Request(self.command, path, self.headers.get("Range"), token))
            if token is not None and token not in hub.valid_tokens:
                return self._error(401, message="Invalid credentials in Authorization header")
            for kind, pattern in ROUTES:
                if match := pattern.fullmatch(raw_path):
                    parts = {key: unquote(value) for key, value in match.groupdict().items()}
                    return self._route(kind, parts, token, body)
            self._error(404, message="Not Found")

        def _route(self, kind: str, match: dict[str, str], token: str | None, body: bool) -> None:
            repo_id, revision = match["repo"], match["rev"]
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            sha = revision if revision in repo.commits else repo.refs.get(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files = repo.commits[sha]
            entries = [_entry(path, data) for path, data in sorted(files.items())]
            if kind == "info":
                siblings = [{"rfilename": e["path"], "size": e["size"], "blobId": e["oid"],
                             **({"lfs": e["lfs"]} if e["lfs"] else {})} for e in entries]
                return self._json({"_id": sha[:24], "id": repo_id, "modelId": repo_id, "sha": sha,
                                   "private": False, "gated": "manual" if repo.gated else False,
                                   "disabled": False, "tags": [], "siblings": siblings}, body)
            if kind == "tree":
                return self._json([{"type": "file", **e} for e in entries], body)
            if repo.gated and token is None:
                return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must "
                                   "have access to it and be authenticated to access it. Please log in.", sha)
            if repo.gated and token not in repo.granted:
                return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are "
                                   "not in the authorized list.", sha)
            if match["path"] not in files:
                return self._error(404, "EntryNotFound", f"{match['path']} does not exist", sha)
            self._file(match["path"], files[match["path"]], _entry(match["path"], files[match["path"]]), sha,
                       body)

        def _file(self, path: str, data: bytes | DiskFile, entry: dict, sha: str, body: bool) -> None:
            etag = entry["lfs"]["sha256"] if entry["lfs"] else entry["oid"]
            size = entry["size"]
            start = 0
            if body and (wanted := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))):
                start = int(wanted[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", sha)
            self.send_header("ETag", f'"{etag}"')
            if entry["lfs"]:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            if not body:
                return
            if isinstance(data, DiskFile):
                with data.path.open("rb") as file:
                    file.seek(start)
                    shutil.copyfileobj(file, self.wfile, 2**20)
                return
            if (hold := hub.take_hold(path)) is not None:
                return self._held(data[start:], hold)
            cut = hub.take_cut(path)
            if cut is None:
                self.wfile.write(data[start:])
                return
            self.wfile.write(data[start:max(start, cut.after_bytes)])
            self.wfile.flush()
            if cut.reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _held(self, data: bytes, hold: Hold) -> None:
            try:
                self.wfile.write(data[:hold.after_bytes])
                self.wfile.flush()
                hold.reached.set()
                hold.release.wait()
                self.wfile.write(data[hold.after_bytes:])
            except OSError:  # the client was killed while the download was held
                self.close_connection = True

        def _json(self, document: object, body: bool) -> None:
            payload = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def _error(self, status: int, code: str | None = None, message: str = "",
                   sha: str | None = None) -> None:
            payload = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if sha:
                self.send_header("X-Repo-Commit", sha)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler
