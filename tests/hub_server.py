"""A small Hugging Face Hub on loopback, for tests: the endpoints huggingface_hub
uses to create a repo, commit files (regular, base64 in the NDJSON commit) and
download a snapshot at a revision. Repos live in memory; every commit gets a
40-hex id, so pinning by commit is real. Unknown routes answer 404 and are
recorded, so a test notices when the client starts using a new endpoint.
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

from loopback import LoopbackServer


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub, as ETag of a regular file) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(LoopbackServer):
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"commits": {sha: {path: bytes}}, "refs": {"main": sha}}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.validated_cards: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def commit(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Add a commit on main holding the previous files plus `files`; returns its id."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, {"commits": {}, "refs": {}})
            parent = repo["refs"].get("main")
            tree = dict(repo["commits"][parent]) if parent else {}
            tree.update(files)
            digest = hashlib.sha1(json.dumps([parent, sorted((k, hashlib.sha1(v).hexdigest()) for k, v in tree.items())]).encode())
            sha = digest.hexdigest()
            repo["commits"][sha] = tree
            repo["refs"]["main"] = sha
            return sha

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def _tree(self, repo_id: str, revision: str):
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, None
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
                    with hub.lock:
                        hub.repos.setdefault(repo_id, {"commits": {}, "refs": {}})
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                if self.command == "POST" and path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(self._body())["content"])
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path)
                if self.command == "POST" and match:
                    files = json.loads(self._body())["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path)
                if self.command == "POST" and match:
                    files = {}
                    for line in self._body().decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    sha = hub.commit(match.group(1), files)
                    return self._send(200, {"commitUrl": f"{hub.url}/{match.group(1)}/commit/{sha}", "commitOid": sha})
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
                if self.command == "GET" and match:
                    sha, tree = hub._tree(*match.groups())
                    if tree is None:
                        return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                    siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(tree.items())]
                    return self._send(200, {"id": match.group(1), "modelId": match.group(1), "sha": sha,
                                            "siblings": siblings, "private": False, "tags": []})
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if self.command == "GET" and match:
                    sha, tree = hub._tree(match.group(1), match.group(2))
                    if tree is None:
                        return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                    folders = sorted({name.rsplit("/", 1)[0] for name in tree if "/" in name})
                    entries = [{"type": "directory", "path": folder, "oid": "0" * 40, "size": 0} for folder in folders]
                    entries += [{"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
                                for name, data in sorted(tree.items())]
                    return self._send(200, entries)
                match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if self.command in ("GET", "HEAD") and match:
                    repo_id, revision, filename = match.groups()
                    sha, tree = hub._tree(repo_id, revision)
                    if tree is None:
                        return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                    if filename not in tree:
                        return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                    data = tree[filename]
                    return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'},
                                      content_type="application/octet-stream")
                if path == "/api/agent-harnesses":  # optional user-agent lookup; the client copes with a 404
                    return self._send(404, {"error": "not served here"})
                hub.unknown.append((self.command, path))
                return self._send(404, {"error": f"no route {self.command} {path}"})

            do_GET = do_HEAD = do_POST = do_PUT = _route

        return Handler
