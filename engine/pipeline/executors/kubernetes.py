"""KubernetesExecutor: each attempt of a job as a batch/v1 Job on a Kubernetes cluster.

Theory of operation. An attempt becomes a Secret (the job's environment, secrets included, so
that no value appears in the Job's spec) and a Job with `backoffLimit: 0` (retries stay the
runner's), `activeDeadlineSeconds` from the job's timeout (a backstop: the runner's own timer
fires first and deletes the Job), `restartPolicy: Never`, CPU and memory requests and limits
from `resources:`, and labels naming the run, the job and the attempt. Its pod has an emptyDir
`/workspace`; an init container fills `/workspace/ws` with the source: a git fetch of one
commit (the run's `CICD_COMMIT` variable, else the configured ref), or a copy from a volume
the runner's workspace also lives on (a PVC). The job container, in the job's `image:`, runs
the job's commands from there and the executor streams its log (`follow=true`) into the job's
log as it is produced.

Artifacts: when the commands succeed, the container packs the files matching the job's
artifact globs as a gzipped tar, with a sha256 of each file, and prints it base64-encoded
between two marker lines that carry a per-attempt token. The executor takes those lines out of
the log, checks every digest and unpacks the files into the job's local workspace, where the
runner stores them in the artifact store (ARTIFACT_STORAGE_PATH) with their sha256 as for any
job. No route from the pod to the server is needed; the image needs `tar`, `base64` and
`sha256sum` (busybox has them), and the artifacts are bounded by `artifacts_max_bytes`.

Stopping: cancel and timeout delete the Job with `propagationPolicy: Foreground` (its pod goes
first) and the Secret. Recovery (a runner that died) deletes the Jobs and Secrets that carry
the run's and job's labels: whatever attempt it had started, recorded or not.

API edge: the client and the mapping of its errors are the deploy target's
(`engine.deploy.targets.kubernetes._Api`); a 403 is reported as the verb and resource the
executor's RBAC Role lacks. The API paths used are exactly:
    POST   /api/v1/namespaces/{ns}/secrets
    DELETE /api/v1/namespaces/{ns}/secrets/{name}
    POST   /apis/batch/v1/namespaces/{ns}/jobs
    GET    /apis/batch/v1/namespaces/{ns}/jobs?labelSelector=...
    DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}?propagationPolicy=Foreground
    GET    /api/v1/namespaces/{ns}/pods?labelSelector=...
    GET    /api/v1/namespaces/{ns}/pods/{name}/log?container=job&follow=true
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import secrets
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.deploy.targets.kubernetes import _Api, _ApiSettings
from engine.errors import ExecutorError, SpecError
from engine.pipeline.executors._remote import artifact_lister, remote_env
from engine.pipeline.executors.base import CommandResult, JobCommand, OnStart, RecoveryRecord
from engine.pipeline.executors.local import local_argv
from engine.pipeline.logs import LogWriter

__all__ = ["RBAC_RULES", "KubernetesExecutor", "KubernetesExecutorConfig", "job_manifest", "load_config"]

T = TypeVar("T")
PREFIX = "cicd-mcp"
WORKSPACE = "/workspace"
_DNS = re.compile(r"[^a-z0-9-]")
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")

RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "list", "delete")),
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
    ("", "secrets", ("create", "delete")),
)
"""(API group, resource, verbs): exactly what the executor calls; docs/executors-remote.md has the Role."""


# -- configuration -------------------------------------------------------------------------------
class GitSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, description="Repository URL the init container fetches from.")
    ref: str = Field(default="HEAD", description="Commit or ref when the run has no CICD_COMMIT variable.")


class VolumeSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = Field(min_length=1, description="PersistentVolumeClaim holding the runner's workspace.")
    local_root: Path = Field(description="Where the runner sees that volume; a job's workspace must be inside.")


class KubernetesExecutorConfig(_ApiSettings):
    """The `PIPELINE_KUBERNETES` file: API access (as the kubernetes deploy target) plus the Jobs' shape."""

    image: str = Field(default="busybox:1.36", min_length=1, description="Image of jobs that name none.")
    git: GitSource | None = Field(default=None, description="Fetch the source by git in an init container.")
    volume: VolumeSource | None = Field(default=None, description="Copy the workspace from a shared volume.")
    init_image: str | None = Field(default=None, description="Image of the init container "
                                   "(default alpine/git:2.45.2 for git, busybox:1.36 for a volume).")
    service_account: str | None = Field(default=None, description="Service account of the Jobs' pods.")
    deadline_slack: int = Field(default=5, ge=0, le=3600,
                                description="Seconds added to a job's timeout for activeDeadlineSeconds.")
    start_timeout: float = Field(default=600, gt=0, le=86400,
                                 description="Seconds a pod may take to start (scheduling, image pull).")
    poll_interval: float = Field(default=1.0, gt=0, le=60, description="Seconds between pod status reads.")
    artifacts_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0, description="Largest artifact bundle.")
    ttl_seconds_after_finished: int = Field(default=600, ge=0, description="A finished Job left behind goes then.")


def load_config(path: Path) -> KubernetesExecutorConfig:
    """Read the executor's YAML file.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: it is not valid (file:line:column and field for each issue).
    """
    from engine.spec.yamlpos import load_mapping_file

    data, pos = load_mapping_file(
        path, "kubernetes executor file", "the kubernetes executor file is a mapping (namespace, image, git, ...)",
        setting="PIPELINE_KUBERNETES")
    try:
        config = KubernetesExecutorConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError([pos.issue(tuple(err["loc"]), err["msg"], key=err["type"] == "extra_forbidden")
                         for err in exc.errors()]) from None
    if config.git is not None and config.volume is not None:
        raise SpecError([pos.issue(("volume",), "give git or volume as the source, not both")])
    return config


# -- pure: names and manifests -------------------------------------------------------------------
def _dns(text: str, limit: int = 63) -> str:
    return _DNS.sub("-", text.lower()).strip("-")[:limit].strip("-") or "x"


def _label(text: str) -> str:
    return _LABEL_VALUE.sub("_", text)[:63].strip("_.-") or "x"


def attempt_labels(run_id: str, job: str, token: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": PREFIX, f"{PREFIX}/executor": "kubernetes",
        f"{PREFIX}/run": _label(run_id), f"{PREFIX}/job": _label(job), f"{PREFIX}/attempt": token,
    }


def _job_script(command: JobCommand) -> tuple[str, str | None]:
    """The job's commands as one shell script (the local executor's, each command echoed before
    it runs), and the line to log first when the job is one simple command."""
    argv, echo = local_argv(command)
    if command.argv is None and len(argv) >= 2 and argv[-2] == "-c":
        return argv[-1], echo
    return shlex.join(argv) + "\n", echo


def _main_script(rel: str, shell: str, artifacts: Sequence[str]) -> str:
    """The job container's command: run the script from the Secret, then pack the artifacts."""
    run = ('if command -v bash >/dev/null 2>&1; then bash --noprofile --norc -eo pipefail -c "$CICD_JOB_SCRIPT"; '
           'else sh -e -c "$CICD_JOB_SCRIPT"; fi') if shell == "bash" else 'sh -e -c "$CICD_JOB_SCRIPT"'
    lines = [
        f"cd {shlex.quote(WORKSPACE + '/ws/' + rel)} || exit 125",
        f"{run} </dev/null 2>&1",
        "code=$?",
    ]
    if artifacts:
        find = artifact_lister(artifacts)
        lines += [
            'if [ "$code" -eq 0 ]; then',
            # `**` needs bash's globstar; an image without bash globs with sh (`**` as `*`).
            f"  if command -v bash >/dev/null 2>&1; then bash -O globstar -O nullglob -c {shlex.quote(find)}; "
            f"else sh -c {shlex.quote(find)}; fi | sort -u > /tmp/cicd-artifacts",
            '  echo "::cicd-artifacts $CICD_ARTIFACT_MARK::"',
            "  tr '\\n' '\\0' < /tmp/cicd-artifacts | xargs -0 -r sha256sum -- | base64 | tr -d '\\n'; echo",
            "  tar czf - -T /tmp/cicd-artifacts | base64 | tr -d '\\n'; echo",
            '  echo "::cicd-artifacts-end $CICD_ARTIFACT_MARK::"',
            "fi",
        ]
    lines.append('exit "$code"')
    return "\n".join(lines) + "\n"


def _source_script(config: KubernetesExecutorConfig, sub_path: str | None) -> str:
    ws = shlex.quote(WORKSPACE + "/ws")
    if config.git is not None:
        return "\n".join([
            "set -e", f"mkdir -p {ws}", f"cd {ws}", "git init -q .",
            'git fetch -q --depth 1 "$CICD_GIT_URL" "$CICD_GIT_REF"', "git checkout -q FETCH_HEAD",
        ]) + "\n"
    if config.volume is not None and sub_path is not None:
        return f"set -e\nmkdir -p {ws}\ncp -a /source/{shlex.quote(sub_path)}/. {ws}/\n"
    return f"mkdir -p {ws}\n"


def job_manifest(config: KubernetesExecutorConfig, command: JobCommand, *, name: str, token: str,
                 run_id: str, commit: str | None, sub_path: str | None) -> dict[str, Any]:
    """The batch/v1 Job of one attempt (the Secret `name` holds its environment)."""
    labels = attempt_labels(run_id, command.job, token)
    try:
        rel = command.cwd.relative_to(command.workspace).as_posix()
    except ValueError:
        rel = "."
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    init_mounts = list(mounts)
    init_env: list[dict[str, str]] = []
    if config.git is not None:
        init_env = [{"name": "CICD_GIT_URL", "value": config.git.url},
                    {"name": "CICD_GIT_REF", "value": commit or config.git.ref}]
    elif config.volume is not None:
        claim = {"claimName": config.volume.claim, "readOnly": True}
        volumes.append({"name": "source", "persistentVolumeClaim": claim})
        init_mounts.append({"name": "source", "mountPath": "/source", "readOnly": True})
    init_image = config.init_image or ("alpine/git:2.45.2" if config.git is not None else "busybox:1.36")
    container: dict[str, Any] = {
        "name": "job", "image": command.image or config.image,
        "command": ["sh", "-c", _main_script(rel, command.shell, command.artifacts)],
        "envFrom": [{"secretRef": {"name": name}}], "volumeMounts": mounts,
    }
    if command.resources:
        amounts = {k: v for k, v in command.resources.items() if k in ("cpu", "memory")}
        container["resources"] = {"requests": dict(amounts), "limits": dict(amounts)}
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "volumes": volumes,
        "initContainers": [{"name": "source", "image": init_image,
                            "command": ["sh", "-c", _source_script(config, sub_path)],
                            "env": init_env, "volumeMounts": init_mounts}],
        "containers": [container],
    }
    if config.service_account:
        pod["serviceAccountName"] = config.service_account
    spec: dict[str, Any] = {
        "backoffLimit": 0, "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if command.timeout:
        spec["activeDeadlineSeconds"] = math.ceil(command.timeout) + config.deadline_slack
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": config.namespace, "labels": labels,
                     "annotations": {f"{PREFIX}/job-name": command.job, f"{PREFIX}/run-id": run_id}},
        "spec": spec,
    }


def secret_manifest(config: KubernetesExecutorConfig, command: JobCommand, *, name: str, token: str,
                    run_id: str, script: str, mark: str, remote_ws: str) -> dict[str, Any]:
    env = remote_env(command, remote_ws)
    env.update({"CICD_JOB_SCRIPT": script, "CICD_ARTIFACT_MARK": mark})
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": config.namespace, "labels": attempt_labels(run_id, command.job, token)},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in env.items()},
    }


def pod_state(pod: Mapping[str, Any]) -> tuple[Literal["waiting", "running", "done", "failed"], str, int | None]:
    """Where a Job's pod is: (state, why, exit code of the job container when it ended)."""
    status = pod.get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        term = (init.get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return "failed", f"fetching the source failed (init container exit {term.get('exitCode')}: " \
                             f"{term.get('reason', '')} {term.get('message', '')})".strip(), None
        waiting = (init.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _BAD_WAITING:
            return "failed", f"source container: {waiting['reason']}: {waiting.get('message', '')}".strip(), None
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        if "terminated" in state:
            return "done", state["terminated"].get("reason", ""), int(state["terminated"].get("exitCode", 0))
        if "running" in state:
            return "running", "", None
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _BAD_WAITING:
            return "failed", f"{waiting['reason']}: {waiting.get('message', '')}".strip(), None
    phase = status.get("phase", "Pending")
    if phase == "Failed":
        return "failed", status.get("reason") or status.get("message") or "the pod failed", None
    return "waiting", phase, None


_BAD_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                          "CreateContainerError", "ErrImageNeverPull"})


# -- the executor ----------------------------------------------------------------------------------
class KubernetesExecutor:
    """Runs each attempt as a batch/v1 Job. See the module docstring."""

    name = "kubernetes"

    def __init__(self, config: KubernetesExecutorConfig | None = None, *, config_file: Path | None = None) -> None:
        """Without `config`: the file PIPELINE_KUBERNETES names, else the defaults (kubeconfig or
        in-cluster access, namespace `default`, no source).

        Raises:
            InputError: the file is invalid.
        """
        if config is None:
            from engine.settings import get_settings

            path = config_file or get_settings().PIPELINE_KUBERNETES
            config = load_config(path.expanduser()) if path is not None else KubernetesExecutorConfig()
        self.config = config
        self.api = _Api(config, ExecutorError)
        self._active = 0

    def set_capacity(self, workers: int) -> None:
        """The cluster schedules the pods; nothing to size here."""

    async def prepare(self, command: JobCommand) -> None:
        """Check that the source can reach the pod.

        Raises:
            ExecutorError: a volume source that does not hold this workspace.
        """
        self._sub_path(command)

    def _sub_path(self, command: JobCommand) -> str | None:
        if self.config.volume is None:
            return None
        root = self.config.volume.local_root.expanduser().resolve()
        ws = command.workspace.resolve()
        if not ws.is_relative_to(root):
            raise ExecutorError(f"kubernetes: the job's workspace {ws} is not on the shared volume "
                                f"({root}, claim {self.config.volume.claim})")
        return ws.relative_to(root).as_posix()

    async def _call(self, verb: str, resource: str, fn: Callable[[Any, Any, Any], T]) -> T:
        """One API call, `fn(batch_v1, core_v1, api_client)`; a 403 names the verb and resource it needs.

        Raises:
            ExecutorError: the API refused or could not be reached.
        """
        from kubernetes import client

        ns = self.config.namespace
        try:
            return await self.api.call(f"{verb} {resource} in namespace {ns}",
                                       lambda _apps, core: fn(client.BatchV1Api(core.api_client), core,
                                                              core.api_client))
        except ExecutorError as exc:
            raise (_forbidden(exc.__cause__, verb, resource, ns) or exc) from exc.__cause__

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Run the attempt as a Job and stream its pod's log (see the module docstring)."""
        self._active += 1
        try:
            return await self._attempt(command, log, on_start)
        finally:
            self._active -= 1
            if not self._active:
                # Jobs are long and the executor has no end of its own: no connection is kept idle.
                with anyio.CancelScope(shield=True):
                    await self.api.close()

    async def _attempt(self, command: JobCommand, log: LogWriter, on_start: OnStart | None) -> CommandResult:
        token = secrets.token_hex(4)
        run_id = command.env.get("CICD_RUN_ID", "run")
        name = _dns(f"cicd-{run_id}-{command.job}", 54).rstrip("-") + "-" + token
        mark = secrets.token_hex(12)
        ns = self.config.namespace
        timeout = self.api.timeout
        try:
            sub_path = self._sub_path(command)
            script, echo = _job_script(command)
            secret = secret_manifest(self.config, command, name=name, token=token, run_id=run_id,
                                     script=script, mark=mark, remote_ws=WORKSPACE + "/ws")
            job = job_manifest(self.config, command, name=name, token=token, run_id=run_id,
                               commit=command.env.get("CICD_COMMIT"), sub_path=sub_path)
            await self._call("create", "secrets", lambda _b, core, _c: core.create_namespaced_secret(
                ns, secret, _preload_content=False, _request_timeout=timeout))
        except ExecutorError as exc:
            return CommandResult(exit_code=None, infrastructure_error=str(exc))
        record = {"namespace": ns, "job": name, "run": _label(run_id), "job_label": _label(command.job)}
        try:
            await self._call("create", "jobs.batch", lambda batch, _core, _c: batch.create_namespaced_job(
                ns, job, _preload_content=False, _request_timeout=timeout))
            if on_start is not None:
                on_start(dict(record))
            log.note(f"kubernetes Job {ns}/{name} (image {job['spec']['template']['spec']['containers'][0]['image']})")
            if echo is not None:
                log.feed(echo.encode() + b"\n")
            return await self._follow(name, token, mark, command, log)
        except ExecutorError as exc:
            with anyio.CancelScope(shield=True):
                await self._delete(name)
            return CommandResult(exit_code=None, infrastructure_error=str(exc))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete(name)
            raise

    async def _pod(self, token: str) -> dict[str, Any] | None:
        ns = self.config.namespace
        selector = f"{PREFIX}/attempt={token}"
        data = await self._call("list", "pods", lambda _b, core, _c: json.loads(core.list_namespaced_pod(
            ns, label_selector=selector, _preload_content=False, _request_timeout=self.api.timeout).data))
        items = data.get("items") or []
        return items[0] if items else None

    async def _follow(self, name: str, token: str, mark: str, command: JobCommand, log: LogWriter) -> CommandResult:
        deadline = time.monotonic() + self.config.start_timeout
        pod: dict[str, Any] | None = None
        while True:
            pod = await self._pod(token)
            state, why, code = pod_state(pod) if pod is not None else ("waiting", "no pod yet", None)
            if state == "failed":
                await self._delete(name)
                return CommandResult(exit_code=None, infrastructure_error=f"kubernetes Job {name}: {why}")
            if state in ("running", "done"):
                break
            if time.monotonic() > deadline:
                await self._delete(name)
                return CommandResult(exit_code=None, infrastructure_error=(
                    f"kubernetes Job {name}: the pod did not start within {self.config.start_timeout:g}s ({why})"))
            await anyio.sleep(self.config.poll_interval)
        assert pod is not None
        pod_name = pod["metadata"]["name"]
        splitter = _ArtifactSplitter(mark, log, self.config.artifacts_max_bytes)
        await self._stream_log(name, pod_name, splitter)
        # The log ends when the container does; its status may lag the end of the stream a little.
        while True:
            pod = await self._pod(token)
            state, why, code = pod_state(pod) if pod is not None else ("failed", "the pod is gone", None)
            if state == "done" or state == "failed":
                break
            await anyio.sleep(min(self.config.poll_interval, 0.2))
        await self._delete(name)
        if state == "failed" or code is None:
            return CommandResult(exit_code=None, infrastructure_error=f"kubernetes Job {name}: {why}")
        if why == "DeadlineExceeded":
            return CommandResult(exit_code=code, infrastructure_error=f"kubernetes Job {name}: activeDeadlineSeconds "
                                                                      "exceeded")
        if code == 0 and command.artifacts:
            try:
                count = await anyio.to_thread.run_sync(splitter.unpack, command.cwd)
            except (OSError, ValueError, tarfile.TarError) as exc:
                return CommandResult(exit_code=None, infrastructure_error=f"could not bring the artifacts back: {exc}")
            log.note(f"{count} artifact file(s) brought back from the pod, sha256 checked")
        return CommandResult(exit_code=code)

    async def _stream_log(self, name: str, pod_name: str, splitter: _ArtifactSplitter) -> None:
        """Follow the job container's log to its end, in a thread of its own. A cancellation deletes
        the Job, which ends the stream, and waits (boundedly) for the thread to see it."""
        from kubernetes import client

        ns = self.config.namespace
        api_client = await self._call("get", "pods/log", lambda _b, core, api_client: api_client)
        failure: dict[str, BaseException] = {}
        box: dict[str, Any] = {}
        finished = threading.Event()

        def stream() -> None:
            try:
                resp: Any = client.CoreV1Api(api_client).read_namespaced_pod_log(
                    pod_name, ns, container="job", follow=True, _preload_content=False)
                box["resp"] = resp
                try:
                    for chunk in resp.stream(64 * 1024, decode_content=False):
                        splitter.feed(chunk)
                finally:
                    resp.release_conn()
                splitter.flush()
            except Exception as exc:  # noqa: BLE001 - mapped below, in the awaiting task
                failure["error"] = exc
            finally:
                finished.set()

        try:
            await anyio.to_thread.run_sync(stream, abandon_on_cancel=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete(name)
                with anyio.move_on_after(10):
                    while not finished.is_set():
                        if "resp" in box:
                            box["resp"].shutdown()   # unblocks the read at once
                        await anyio.sleep(0.02)
            raise
        if "error" in failure:
            exc = failure["error"]
            raise _forbidden(exc, "get", "pods/log", ns) or ExecutorError(
                f"kubernetes: reading the log of pod {pod_name}: {type(exc).__name__}: {exc}") from exc

    async def _delete(self, name: str) -> None:
        ns = self.config.namespace
        from kubernetes.client.exceptions import ApiException

        def delete_job(batch: Any, _core: Any, _c: Any) -> None:
            try:
                batch.delete_namespaced_job(name, ns, propagation_policy="Foreground", _preload_content=False,
                                            _request_timeout=self.api.timeout)
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def delete_secret(_batch: Any, core: Any, _c: Any) -> None:
            try:
                core.delete_namespaced_secret(name, ns, _preload_content=False, _request_timeout=self.api.timeout)
            except ApiException as exc:
                if exc.status != 404:
                    raise

        for verb, resource, fn in (("delete", "jobs.batch", delete_job), ("delete", "secrets", delete_secret)):
            try:
                await self._call(verb, resource, fn)
            except ExecutorError:
                continue   # the Job's TTL removes it later; a stale Secret is removed by recovery

    def recover(self, record: RecoveryRecord) -> bool:
        """Delete the Jobs (and Secrets) a dead runner left for this run and job, found by label."""
        run, job = record.get("run"), record.get("job_label")
        if not isinstance(run, str) or not isinstance(job, str):
            return False
        return _run_blocking(self.delete_orphans, f"{PREFIX}/run={run},{PREFIX}/job={job}") > 0

    async def delete_orphans(self, selector: str) -> int:
        """Delete every Job (and its Secret) that `selector` matches; returns how many.

        Raises:
            ExecutorError: the API refused (a 403 names the missing verb).
        """
        ns = self.config.namespace
        data = await self._call("list", "jobs.batch", lambda batch, _core, _c: json.loads(batch.list_namespaced_job(
            ns, label_selector=f"{PREFIX}/executor=kubernetes,{selector}", _preload_content=False,
            _request_timeout=self.api.timeout).data))
        names = [item["metadata"]["name"] for item in data.get("items") or []]
        for name in names:
            await self._delete(name)
        if not self._active:
            await self.api.close()
        return len(names)

    async def close(self) -> None:
        await self.api.close()


def _forbidden(cause: BaseException | None, verb: str, resource: str, namespace: str) -> ExecutorError | None:
    """The error for an API refusal by RBAC (403), naming what the Role lacks; None for anything else."""
    if getattr(cause, "status", None) != 403:
        return None
    res, _, group = resource.partition(".")
    return ExecutorError(
        f"kubernetes: forbidden: the executor may not {verb} {resource} in namespace {namespace} "
        f"(RBAC: its Role needs verb {verb!r} on resource {res!r} of API group {group!r}; "
        "see docs/executors-remote.md)")


def _run_blocking(fn: Callable[[str], Any], arg: str) -> int:
    """Run an async function to the end from synchronous code, in a thread of its own (the caller
    may be inside an event loop)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = anyio.run(fn, arg)
        except BaseException as exc:  # noqa: BLE001 - recovery must not stop a start-up; logged by the caller
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join()
    return int(box.get("value") or 0)


class _ArtifactSplitter:
    """Feeds the pod's log to the job's log, keeping back the artifact block between the markers."""

    def __init__(self, mark: str, log: LogWriter, limit: int) -> None:
        self.begin = f"::cicd-artifacts {mark}::".encode()
        self.end = f"::cicd-artifacts-end {mark}::".encode()
        self.log = log
        self.limit = limit
        self._carry = b""
        self._inside = False
        self._block: list[bytes] = []
        self._size = 0
        self.too_big = False

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        lines = data.split(b"\n")
        self._carry = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if not self._inside and line.strip() == self.begin:
            self._inside = True
            return
        if self._inside:
            if line.strip() == self.end:
                self._inside = False
                return
            self._size += len(line)
            if self._size > self.limit * 4 // 3 + 1024:
                self.too_big = True
            elif not self.too_big:
                self._block.append(line)
            return
        self.log.feed(line + b"\n")

    def flush(self) -> None:
        if self._carry:
            self._line(self._carry)
            self._carry = b""
        self.log.flush()

    def unpack(self, cwd: Path) -> int:
        """Check and unpack the artifact block into `cwd`; the number of files.

        Raises:
            ValueError: no block, a torn one, a bundle over the limit, or a digest that differs.
        """
        if self.too_big:
            raise ValueError(f"the artifacts are larger than artifacts_max_bytes ({self.limit} bytes)")
        if len(self._block) != 2:
            raise ValueError("the pod printed no complete artifact block (was its log cut short?)")
        try:
            sums = base64.b64decode(self._block[0], validate=True).decode()
            bundle = base64.b64decode(self._block[1], validate=True)
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"the artifact block is corrupt: {exc}") from exc
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            tar.extractall(cwd, filter="data")
        root = cwd.resolve()
        count = 0
        for line in sums.splitlines():
            digest, _, name = line.partition("  ")
            path = (cwd / name).resolve()
            if not path.is_relative_to(root):
                raise ValueError(f"artifact {name!r} is outside the workspace")
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise ValueError(f"artifact {name} arrived with another sha256 than it had in the pod")
            count += 1
        return count
