"""A small Hugging Face Hub on loopback, for tests: the endpoints huggingface_hub
uses to create a repo (409 when it exists, as on the Hub: its visibility stays as it
was), commit files (regular, base64 in the NDJSON commit; deletions; what
CommitScheduler and upload_folder send), download a file or a snapshot at a revision,
for model and dataset repos (two namespaces, as on the Hub: /api/models/... and
/api/datasets/..., /{repo}/resolve/... and /datasets/{repo}/resolve/...). Repos live in
memory; every commit gets a 40-hex id, so pinning by commit is real; `commits` lists a
repo's commits oldest first. Unknown routes answer 404 and are recorded, so a test
notices when the client starts using a new endpoint.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from support.loopback import LoopbackServer


def hub_env(hub_url, hf_home, **extra) -> dict:
    """The environment that points huggingface_hub (in a child process) at a loopback Hub."""
    return {"HF_ENDPOINT": hub_url, "HF_TOKEN": "hf_loopback_token", "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub, as ETag of a regular file) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(LoopbackServer):
    def __init__(self):
        # repo_id -> {"commits": {sha: {path: bytes}} (in commit order), "refs": {"main": sha}, "private": bool}
        self.repos: dict[str, dict] = {}  # model repos
        self.datasets: dict[str, dict] = {}  # dataset repos
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.validated_cards: list[dict] = []
        self.telemetry: list[str] = []
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def store(self, kind: str) -> dict[str, dict]:
        """The repos of a kind, as the API names it ("models", "datasets") or as a repo_type."""
        return self.datasets if kind in ("datasets", "dataset") else self.repos

    def commit(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", deleted=()) -> str:
        """Add a commit on main holding the previous files plus `files`, less `deleted` (paths, or
        folders ending in /); returns its id."""
        with self.lock:
            repo = self.store(repo_type).setdefault(repo_id, {"commits": {}, "refs": {}, "private": False})
            parent = repo["refs"].get("main")
            tree = dict(repo["commits"][parent]) if parent else {}
            for path in deleted:
                for name in [n for n in tree if n == path or (path.endswith("/") and n.startswith(path))]:
                    del tree[name]
            tree.update(files)
            digest = hashlib.sha1(json.dumps([parent, sorted((k, hashlib.sha1(v).hexdigest()) for k, v in tree.items())]).encode())
            sha = digest.hexdigest()
            repo["commits"][sha] = tree
            repo["refs"]["main"] = sha
            return sha

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def _tree(self, kind: str, repo_id: str, revision: str):
        repo = self.store(kind).get(repo_id)
        if repo is None:
            return None, None
        if not repo["commits"] and revision == "main":
            return None, {}  # a repo just created: the Hub's holds only .gitattributes
        sha = repo["refs"].get(revision, revision)
        return sha, repo["commits"].get(sha)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, content_type="application/json"):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                return data

            def _not_found(self, kind, repo_id):
                """As the Hub: a repo that is not there, or a revision it does not have."""
                if repo_id not in hub.store(kind):
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})

            def _validate_yaml(self, content):
                """Like the Hub: the card's front matter must be a YAML mapping."""
                import yaml

                match = re.match(r"^---\n(.*?)\n---", content, re.S)
                try:
                    front = yaml.safe_load(match.group(1)) if match else {}
                except yaml.YAMLError as error:
                    return self._send(400, {"errors": [{"message": str(error)}]})
                if not isinstance(front, dict):
                    return self._send(400, {"errors": [{"message": "metadata must be a mapping"}]})
                hub.validated_cards.append(front)
                return self._send(200, {"errors": [], "warnings": []})

            def _route(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                if self.command == "POST" and path == "/api/repos/create":
                    payload = json.loads(self._body() or b"{}")
                    repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
                    kind = payload.get("type") or "model"
                    prefix = "datasets/" if kind == "dataset" else ""
                    with hub.lock:
                        if repo_id in hub.store(kind):
                            return self._send(409, {"error": f"You already created this {kind} repo",
                                                    "url": f"{hub.url}/{prefix}{repo_id}"})
                        hub.store(kind)[repo_id] = {"commits": {}, "refs": {},
                                                    "private": payload.get("visibility") == "private"}
                    return self._send(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id})
                if self.command == "POST" and path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(self._body())["content"])
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/preupload/(.+)", path)
                if self.command == "POST" and match:
                    files = json.loads(self._body())["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/commit/(.+)", path)
                if self.command == "POST" and match:
                    kind, repo_id, _ = match.groups()
                    if repo_id not in hub.store(kind):
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    files, deleted = {}, []
                    for line in self._body().decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] in ("deletedFile", "deletedFolder"):
                            deleted.append(item["value"]["path"].rstrip("/") + ("/" if item["key"] == "deletedFolder" else ""))
                    sha = hub.commit(repo_id, files, kind, deleted)
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha})
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/revision/(.+)", path)
                if self.command == "GET" and match:
                    kind, repo_id, revision = match.groups()
                    sha, tree = hub._tree(kind, repo_id, revision)
                    if tree is None:
                        return self._not_found(kind, repo_id)
                    siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(tree.items())]
                    return self._send(200, {"id": repo_id, **({"modelId": repo_id} if kind == "models" else {}), "sha": sha,
                                            "siblings": siblings, "private": hub.store(kind)[repo_id]["private"], "tags": []})
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if self.command == "GET" and match:
                    sha, tree = hub._tree(match.group(1), match.group(2), match.group(3))
                    if tree is None:
                        return self._not_found(match.group(1), match.group(2))
                    folders = sorted({name.rsplit("/", 1)[0] for name in tree if "/" in name})
                    entries = [{"type": "directory", "path": folder, "oid": "0" * 40, "size": 0} for folder in folders]
                    entries += [{"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
                                for name, data in sorted(tree.items())]
                    return self._send(200, entries)
                match = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if self.command in ("GET", "HEAD") and match:
                    prefix, repo_id, revision, filename = match.groups()
                    sha, tree = hub._tree("datasets" if prefix else "models", repo_id, revision)
                    if tree is None:
                        return self._not_found("datasets" if prefix else "models", repo_id)
                    if filename not in tree:
                        return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                    data = tree[filename]
                    return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'},
                                      content_type="application/octet-stream")
                if path.startswith("/api/telemetry/"):  # huggingface_hub.send_telemetry (Gradio's analytics): the Hub says 200
                    hub.telemetry.append(path)
                    return self._send(200)
                if path == "/api/agent-harnesses":  # optional user-agent lookup; the client copes with a 404
                    return self._send(404, {"error": "not served here"})
                hub.unknown.append((self.command, path))
                return self._send(404, {"error": f"no route {self.command} {path}"})

            do_GET = do_HEAD = do_POST = do_PUT = _route

        return Handler
