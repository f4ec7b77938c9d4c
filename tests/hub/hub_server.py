"""A small Hugging Face Hub server for tests: stdlib http.server on 127.0.0.1.

It implements the part of the Hub HTTP API that huggingface_hub's real client uses for
``create_repo``, ``upload_folder`` (preupload answered with upload mode "regular", so file
contents travel inline in the NDJSON commit call), ``repo_info``, ``list_repo_tree``,
``hf_hub_download`` and ``snapshot_download``. Repos are kept in memory as a list of
commits; every request is recorded so tests can look at what the client sent, and faults
(an HTTP status for the next N matching requests) can be injected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def at(self, rev: str) -> Commit | None:
        if rev == "main":
            return self.head
        for c in self.commits:
            if c.oid == rev:
                return c
        return None


@dataclass
class Fault:
    method: str
    path_re: str
    status: int
    times: int = 1


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HubState:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = dict(tokens)  # token -> user name
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()

    def fail(self, method: str, path_re: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests matching ``method`` and ``path_re`` get ``status``."""
        with self.lock:
            self.faults.append(Fault(method, path_re, status, times))

    def take_fault(self, method: str, path: str) -> int | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.method == method and re.search(f.path_re, path):
                    f.times -= 1
                    return f.status
        return None

    def n_commits(self, repo_id: str) -> int:
        return len(self.repos[repo_id].commits)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    # --- plumbing -----------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, message: str, code: str | None = None, head: bool = False, **extra) -> None:
        headers = {"X-Error-Message": message, **extra}
        if code:
            headers["X-Error-Code"] = code
        body = b"" if head else json.dumps({"error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json", **headers}, head=head)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.state.tokens.get(auth[len("Bearer ") :])
        return None

    def _has_bad_token(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return bool(auth) and self._user() is None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        body = self._body() if method in ("POST", "PUT") else b""
        with self.state.lock:
            self.state.requests.append(
                Recorded(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        status = self.state.take_fault(method, path)
        if status is not None:
            self._error(status, f"injected fault {status}", head=method == "HEAD")
            return
        query = parse_qs(url.query)
        for pattern, handler in self._routes(method):
            m = re.fullmatch(pattern, path)
            if m:
                handler(m, body, query)
                return
        self._error(404, f"no route for {method} {path}", head=method == "HEAD")

    def _routes(self, method: str):
        if method == "POST":
            return [
                (r"/api/repos/create", self._create),
                (r"/api/validate-yaml", self._validate_yaml),
                (rf"/api/models/{_REPO}/preupload/{_REV}", self._preupload),
                (rf"/api/models/{_REPO}/commit/{_REV}", self._commit),
            ]
        if method == "GET":
            return [
                (rf"/api/models/{_REPO}(?:/revision/{_REV})?", self._info),
                (rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<sub>.*))?", self._tree),
                (rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", self._resolve),
            ]
        if method == "HEAD":
            return [(rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", self._resolve_head)]
        return []

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- access -------------------------------------------------------------------------
    def _readable(self, repo_id: str, head: bool = False) -> Repo | None:
        if self._has_bad_token():
            self._error(401, "Invalid credentials in Authorization header", head=head)
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and self._user() is None):
            self._error(404, "Repository not found", "RepoNotFound", head=head)
            return None
        return repo

    def _writable(self, repo_id: str) -> Repo | None:
        if self._user() is None:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        return repo

    # --- API ----------------------------------------------------------------------------
    def _create(self, m, body: bytes, query) -> None:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
            return
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self.endpoint}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                msg = "You already created this model repo"
                self._json(409, {"error": msg, "url": url}, {"X-Error-Message": msg})
                return
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_id, private)
            files = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            repo.commits.append(Commit(_commit_oid(repo_id, "", files), "initial commit", files))
            self.state.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, m, body: bytes, query) -> None:
        import yaml

        content = json.loads(body).get("content", "")
        parts = content.split("---\n")
        errors = []
        if not content.startswith("---\n") or len(parts) < 3:
            errors.append({"message": "no YAML metadata block"})
        else:
            try:
                meta = yaml.safe_load(parts[1])
                if not isinstance(meta, dict):
                    errors.append({"message": "metadata is not a mapping"})
            except yaml.YAMLError as e:
                errors.append({"message": f"invalid YAML: {e}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _info(self, m, body: bytes, query) -> None:
        repo = self._readable(m["repo"])
        if repo is None:
            return
        commit = repo.at(m["rev"] or "main")
        if commit is None:
            self._error(404, "Revision not found", "RevisionNotFound")
            return
        self._json(
            200,
            {
                "id": repo.repo_id,
                "sha": commit.oid,
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            },
        )

    def _tree(self, m, body: bytes, query) -> None:
        repo = self._readable(m["repo"])
        if repo is None:
            return
        commit = repo.at(m["rev"])
        if commit is None:
            self._error(404, "Revision not found", "RevisionNotFound")
            return
        sub = (m["sub"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, dirs = [], set()
        for p, data in sorted(commit.files.items()):
            if sub and not p.startswith(sub + "/"):
                continue
            rest = p[len(sub) + 1 :] if sub else p
            if "/" in rest and not recursive:
                dirs.add((f"{sub}/" if sub else "") + rest.split("/")[0])
                continue
            entries.append({"type": "file", "path": p, "size": len(data), "oid": git_blob_sha1(data)})
        entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in sorted(dirs)]
        self._json(200, entries)

    def _preupload(self, m, body: bytes, query) -> None:
        repo = self._writable(m["repo"])
        if repo is None:
            return
        files = json.loads(body)["files"]
        current = repo.at(m["rev"])
        out = []
        for f in files:
            entry = {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
            if current is not None and f["path"] in current.files:
                entry["oid"] = git_blob_sha1(current.files[f["path"]])
            out.append(entry)
        self._json(200, {"files": out, "commitOid": current.oid if current else None})

    def _commit(self, m, body: bytes, query) -> None:
        repo = self._writable(m["repo"])
        if repo is None:
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        with self.state.lock:
            base = repo.at(m["rev"])
            if base is None:
                self._error(404, "Revision not found", "RevisionNotFound")
                return
            if header.get("parentCommit") and header["parentCommit"] != base.oid:
                self._error(412, "parent commit is not the head")
                return
            files = dict(base.files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    self._error(400, "this test server only accepts regular uploads")
                    return
            oid = _commit_oid(repo.repo_id, base.oid, files, header.get("summary", ""))
            repo.commits.append(Commit(oid, header.get("summary", ""), files))
        self._json(
            200,
            {
                "commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": None,
            },
        )

    def _resolve_common(self, m, head: bool) -> tuple[Commit, bytes] | None:
        repo = self._readable(m["repo"], head=head)
        if repo is None:
            return None
        commit = repo.at(m["rev"])
        if commit is None:
            self._error(404, "Revision not found", "RevisionNotFound", head=head)
            return None
        data = commit.files.get(m["file"])
        if data is None:
            self._error(404, "Entry not found", "EntryNotFound", head=head, **{"X-Repo-Commit": commit.oid})
            return None
        return commit, data

    def _resolve_headers(self, commit: Commit, data: bytes) -> dict[str, str]:
        return {
            "ETag": f'"{git_blob_sha1(data)}"',
            "X-Repo-Commit": commit.oid,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }

    def _resolve_head(self, m, body: bytes, query) -> None:
        found = self._resolve_common(m, head=True)
        if found is not None:
            commit, data = found
            self.send_response(200)
            for k, v in self._resolve_headers(commit, data).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

    def _resolve(self, m, body: bytes, query) -> None:
        found = self._resolve_common(m, head=False)
        if found is None:
            return
        commit, data = found
        rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            headers = {
                **self._resolve_headers(commit, data),
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
            }
            self._send(206, data[start:], headers)
            return
        self._send(200, data, self._resolve_headers(commit, data))


def _commit_oid(repo_id: str, parent: str, files: dict[str, bytes], message: str = "") -> str:
    h = hashlib.sha1(f"{repo_id}\0{parent}\0{message}\0".encode())
    for p in sorted(files):
        h.update(p.encode() + b"\0" + git_blob_sha1(files[p]).encode())
    return h.hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """A running local Hub: ``with HubServer(tokens={...}) as hub: hub.endpoint``."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.state = HubState(tokens or {})
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = self.state
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
