"""A fake Kubernetes API server for the kubernetes executor: exactly the paths it uses, nothing more.

No cluster can run on the test machines (no container runtime for a kubelet, no etcd), so this
stands in for one; `test_kubernetes_executor.py` also has a real-cluster test that runs when
KUBECONFIG is set. Over real HTTP on 127.0.0.1 it serves:

    POST   /api/v1/namespaces/{ns}/secrets            DELETE /api/v1/namespaces/{ns}/secrets/{name}
    POST   /apis/batch/v1/namespaces/{ns}/jobs        GET    /apis/batch/v1/namespaces/{ns}/jobs?labelSelector=
    DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name} (records propagationPolicy)
    GET    /api/v1/namespaces/{ns}/pods?labelSelector=
    GET    /api/v1/namespaces/{ns}/pods/{name}/log?container=&follow=

and answers anything else 404. `allowed`, when set, is an RBAC Role: a request whose (verb,
resource) is not in it gets the API server's 403 Status.

A tiny "kubelet" runs a created Job's pod: its init containers, then its container, each as a
real local process (`command` run in a fresh session) with the pod's volumes mapped to temp
directories (a PVC to `claims[claimName]`), `envFrom` secrets resolved and the output kept as
the container's log, which a `follow` request streams as it grows. The image is not pulled;
one whose name contains "missing" stays waiting in ErrImagePull. `activeDeadlineSeconds` kills
the pod (reason DeadlineExceeded); deleting the Job kills its pod's processes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_SECRETS = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
_VERBS = {"GET": "get", "POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}


def _status(code: int, message: str, reason: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _matches(labels: dict[str, str], selector: str) -> bool:
    want = dict(p.split("=", 1) for p in selector.split(",") if p)
    return all(labels.get(k) == v for k, v in want.items())


class _Pod:
    def __init__(self, obj: dict[str, Any], job: dict[str, Any]) -> None:
        self.obj = obj
        self.job = job
        self.log = b""
        self.cond = threading.Condition()
        self.finished = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed_for: str | None = None
        self.dirs: list[Path] = []


class FakeJobsAPI:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.requests: list[tuple[str, str, str]] = []     # (method, path, query)
        self.deletions: list[tuple[str, str]] = []          # (job name, propagationPolicy)
        self.claims: dict[str, Path] = {}
        self.allowed: set[tuple[str, str]] | None = None
        self.lock = threading.Lock()
        self.url = ""

    # -- RBAC ---------------------------------------------------------------------------------
    def _forbidden(self, verb: str, resource: str, ns: str) -> dict[str, Any] | None:
        if self.allowed is None or (verb, resource) in self.allowed:
            return None
        res, _, group = resource.partition(".")
        return _status(403, f'{resource} is forbidden: User "system:serviceaccount:{ns}:runner" cannot {verb} '
                            f'resource "{res}" in API group "{group}" in the namespace "{ns}"', "Forbidden")

    # -- routing ------------------------------------------------------------------------------
    def handle(self, method: str, raw: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw)
        query = parse_qs(parts.query)
        self.requests.append((method, parts.path, parts.query))
        path = parts.path
        for pattern, resource in ((_SECRETS, "secrets"), (_JOBS, "jobs.batch"), (_PODS, "pods"), (_LOG, "pods/log")):
            m = pattern.match(path)
            if m is None:
                continue
            ns = m.group(1)
            name = m.group(2) if m.lastindex and m.lastindex >= 2 else None
            verb = _VERBS.get(method, method.lower())
            if method == "GET" and name is None and resource != "pods/log":
                verb = "list"
            refused = self._forbidden(verb, resource, ns)
            if refused is not None:
                return 403, refused
            return self._serve(resource, verb, ns, name, query, body)
        return 404, _status(404, f"the fake serves no {path}", "NotFound")

    def _serve(self, resource: str, verb: str, ns: str, name: str | None, query: dict[str, list[str]],
               body: bytes) -> tuple[int, Any]:
        selector = query.get("labelSelector", [""])[0]
        with self.lock:
            if resource == "secrets":
                if verb == "create":
                    obj = json.loads(body)
                    key = (ns, obj["metadata"]["name"])
                    if key in self.secrets:
                        return 409, _status(409, f'secrets "{key[1]}" already exists', "AlreadyExists")
                    self.secrets[key] = obj
                    return 201, obj
                if verb == "delete" and name is not None:
                    if self.secrets.pop((ns, name), None) is None:
                        return 404, _status(404, f'secrets "{name}" not found', "NotFound")
                    return 200, _status(200, "deleted")
            if resource == "jobs.batch":
                if verb == "create":
                    obj = json.loads(body)
                    key = (ns, obj["metadata"]["name"])
                    if key in self.jobs:
                        return 409, _status(409, f'jobs.batch "{key[1]}" already exists', "AlreadyExists")
                    obj["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4())})
                    obj["status"] = {}
                    self.jobs[key] = obj
                    self._start_pod(ns, obj)
                    return 201, obj
                if verb == "list":
                    items = [o for (n, _), o in sorted(self.jobs.items()) if n == ns
                             and _matches(o["metadata"].get("labels", {}), selector)]
                    return 200, {"kind": "JobList", "apiVersion": "batch/v1", "items": items}
                if verb == "delete" and name is not None:
                    job = self.jobs.pop((ns, name), None)
                    if job is None:
                        return 404, _status(404, f'jobs.batch "{name}" not found', "NotFound")
                    self.deletions.append((name, query.get("propagationPolicy", [""])[0]))
                    for key, pod in list(self.pods.items()):
                        if pod.job is job:
                            self._kill(pod, "deleted")
                            del self.pods[key]
                    return 200, _status(200, "deleted")
            if resource == "pods" and verb == "list":
                items = [copy.deepcopy(p.obj) for (n, _), p in sorted(self.pods.items()) if n == ns
                         and _matches(p.obj["metadata"].get("labels", {}), selector)]
                return 200, {"kind": "PodList", "apiVersion": "v1", "items": items}
            if resource == "pods/log" and name is not None:
                pod = self.pods.get((ns, name))
                if pod is None:
                    return 404, _status(404, f'pods "{name}" not found', "NotFound")
                return 200, pod
        return 405, _status(405, f"{verb} {resource} is not served by the fake", "MethodNotAllowed")

    # -- the kubelet --------------------------------------------------------------------------
    def _start_pod(self, ns: str, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns,
                            "labels": {**template["metadata"].get("labels", {}),
                                       "job-name": job["metadata"]["name"]}},
               "spec": copy.deepcopy(template["spec"]),
               "status": {"phase": "Pending", "containerStatuses": [
                   {"name": c["name"], "state": {"waiting": {"reason": "PodInitializing"}}}
                   for c in template["spec"]["containers"]]}}
        pod = _Pod(obj, job)
        self.pods[(ns, name)] = pod
        threading.Thread(target=self._kubelet, args=(ns, pod), daemon=True).start()

    def _kubelet(self, ns: str, pod: _Pod) -> None:
        spec = pod.obj["spec"]
        mapping: dict[str, str] = {}
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                mapping[vol["name"]] = str(self.claims[vol["persistentVolumeClaim"]["claimName"]])
            else:
                d = Path(tempfile.mkdtemp(prefix="fake-kubelet-"))
                pod.dirs.append(d)
                mapping[vol["name"]] = str(d)
        deadline = spec.get("activeDeadlineSeconds") or pod.job["spec"].get("activeDeadlineSeconds")
        if deadline:
            timer = threading.Timer(float(deadline), self._deadline, args=(pod,))
            timer.daemon = True
            timer.start()
        try:
            for i, init in enumerate(spec.get("initContainers", [])):
                code, _ = self._run(ns, pod, init, mapping, keep_log=False)
                state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
                with self.lock:
                    statuses = pod.obj["status"].setdefault("initContainerStatuses", [])
                    statuses.append({"name": init["name"], "state": state})
                if code != 0:
                    with self.lock:
                        pod.obj["status"]["phase"] = "Failed"
                    return
                del i
            main = spec["containers"][0]
            if "missing" in main.get("image", ""):
                with self.lock:
                    pod.obj["status"]["containerStatuses"][0]["state"] = {"waiting": {
                        "reason": "ErrImagePull", "message": f'pull access denied for {main["image"]}'}}
                return
            code, reason = self._run(ns, pod, main, mapping, keep_log=True)
            with self.lock:
                pod.obj["status"]["containerStatuses"][0]["state"] = {
                    "terminated": {"exitCode": code, "reason": reason}}
                pod.obj["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
                if pod.killed_for == "DeadlineExceeded":
                    pod.obj["status"]["reason"] = "DeadlineExceeded"
        finally:
            with pod.cond:
                pod.finished = True
                pod.cond.notify_all()
            for d in pod.dirs:
                shutil.rmtree(d, ignore_errors=True)

    def _run(self, ns: str, pod: _Pod, container: dict[str, Any], mapping: dict[str, str],
             keep_log: bool) -> tuple[int, str]:
        mounts = {m["mountPath"]: mapping[m["name"]] for m in container.get("volumeMounts", [])}

        def local(text: str) -> str:
            for mount, real in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                text = text.replace(mount, real)
            return text

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": mapping.get("workspace", "/tmp")}
        for source in container.get("envFrom", []):
            secret = self.secrets.get((ns, source["secretRef"]["name"]))
            if secret is None:
                return 1, "CreateContainerConfigError"
            env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        env = {k: local(v) for k, v in env.items()}
        argv = [local(a) for a in container["command"] + container.get("args", [])]
        if pod.killed_for is not None:
            return 137, "Error"
        with self.lock:
            if keep_log:
                pod.obj["status"]["phase"] = "Running"
                pod.obj["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "now"}}
            proc = subprocess.Popen(argv, env=env, cwd=local(container.get("workingDir", "/")) if
                                    container.get("workingDir") else None, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            pod.proc = proc
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            if keep_log:
                with pod.cond:
                    pod.log += chunk
                    pod.cond.notify_all()
        proc.stdout.close()
        code = proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if code < 0:
            return 128 - code, "Error"
        return code, "Completed" if code == 0 else "Error"

    def _kill(self, pod: _Pod, why: str) -> None:
        pod.killed_for = pod.killed_for or why
        if pod.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.proc.pid, signal.SIGKILL)

    def _deadline(self, pod: _Pod) -> None:
        if not pod.finished:
            self._kill(pod, "DeadlineExceeded")

    def running_processes(self) -> int:
        """Pods whose container process still runs."""
        return sum(1 for p in self.pods.values() if p.proc is not None and p.proc.poll() is None)


@contextmanager
def fake_jobs_api(port: int) -> Iterator[FakeJobsAPI]:
    api = FakeJobsAPI()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, payload = api.handle(self.command, self.path, body)
            if isinstance(payload, _Pod):
                self._stream(payload, "follow=true" in self.path)
                return
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, pod: _Pod, follow: bool) -> None:
            # HTTP/1.0 without a length: the body ends when the connection closes, as a followed log does.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            sent = 0
            while True:
                with pod.cond:
                    while follow and sent == len(pod.log) and not pod.finished:
                        pod.cond.wait(0.5)
                    chunk, done = pod.log[sent:], pod.finished or not follow
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                if done and sent == len(pod.log):
                    return

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
        with api.lock:
            for pod in api.pods.values():
                api._kill(pod, "shutdown")
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        time.sleep(0)
