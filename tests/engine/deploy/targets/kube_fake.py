"""A fake Kubernetes API server: exactly the paths the kubernetes target and router use, nothing more.

No API server can be installed on the test machines, so this stands in for one. It serves
`/apis/apps/v1/namespaces/{ns}/deployments[/{name}]` (list with labelSelector, create, read,
JSON-patch) and `/api/v1/namespaces/{ns}/services[/{name}]` (create, read, JSON-patch) over
real HTTP on 127.0.0.1, answers anything else 404, and refuses a PATCH that is not a JSON patch
(415). A tiny "controller" completes a Deployment's rollout one read after its spec changed, or
marks it ProgressDeadlineExceeded when an image's name contains "broken". Every request is
recorded in `requests` so tests can assert which calls were made.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?$")
_SERVICES = re.compile(r"^/api/v1/namespaces/([^/]+)/services(?:/([^/]+))?$")


def _tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/remove (what the target sends)."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _tokens(op["path"])
        node: Any = out
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and (key not in node if isinstance(node, dict) else key >= len(node)):
                raise KeyError(op["path"])
            node[key] = op["value"]
        elif op["op"] == "remove":
            del node[key]
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return out


class FakeKubeAPI:
    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.url = ""

    # the controller: a changed spec is rolled out on the next read
    def _reconcile(self, dep: dict[str, Any]) -> None:
        gen = dep["metadata"]["generation"]
        status = dep.setdefault("status", {})
        if status.get("observedGeneration", 0) >= gen:
            return
        if not status.pop("_seen", False):
            status["_seen"] = True  # first read after the change: not observed yet
            return
        replicas = int(dep["spec"].get("replicas", 1))
        images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
        if any("broken" in i for i in images):
            dep["status"] = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": 0,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f"ReplicaSet of {dep['metadata']['name']} has timed out progressing",
                    }
                ],
            }
        else:
            dep["status"] = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }

    def handle(self, method: str, raw_path: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(raw_path)
        self.requests.append((method, parts.path, content_type))
        routes = ((_DEPLOYMENTS, self.deployments, "Deployment"), (_SERVICES, self.services, "Service"))
        found = [(m, store, kind) for pattern, store, kind in routes if (m := pattern.match(parts.path))]
        if not found:
            return 404, _status(404, f"the fake serves no {parts.path}")
        m, store, kind = found[0]
        ns, name = m.group(1), m.group(2)
        with self.lock:
            if name is None and method == "GET":
                selector = parse_qs(parts.query).get("labelSelector", [""])[0]
                want = dict(p.split("=", 1) for p in selector.split(",") if p)
                items = [
                    o
                    for (n, _), o in sorted(store.items())
                    if n == ns and all(o["metadata"].get("labels", {}).get(k) == v for k, v in want.items())
                ]
                if kind == "Deployment":
                    for o in items:
                        self._reconcile(o)
                return 200, {"kind": f"{kind}List", "items": [_public(o) for o in items]}
            if name is None and method == "POST":
                obj = json.loads(body)
                key = (ns, obj["metadata"]["name"])
                if key in store:
                    return 409, _status(409, f"{kind} {key[1]} already exists")
                obj["metadata"].update({"namespace": ns, "generation": 1, "uid": str(uuid.uuid4())})
                obj["status"] = {}
                store[key] = obj
                return 201, _public(obj)
            obj = store.get((ns, name or ""))
            if obj is None:
                return 404, _status(404, f'{kind.lower()}s "{name}" not found')
            if method == "GET":
                if kind == "Deployment":
                    self._reconcile(obj)
                return 200, _public(obj)
            if method == "PATCH":
                if content_type != "application/json-patch+json":
                    return 415, _status(415, f"the fake takes JSON patches only, not {content_type}")
                patched = apply_json_patch(obj, json.loads(body))
                if patched["spec"] != obj["spec"]:
                    patched["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
                store[(ns, name or "")] = patched
                return 200, _public(patched)
        return 405, _status(405, f"{method} is not served by the fake")


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.get("status", {}).pop("_seen", None)
    return out


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


@contextmanager
def fake_kube_api(port: int) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            code, payload = api.handle(self.command, self.path, ctype, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
