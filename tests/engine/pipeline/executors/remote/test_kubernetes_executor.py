"""The kubernetes executor against a fake API server of the exact paths it uses (kube_jobs_fake, marker
`k8s`; no cluster can run here), and against a real cluster when KUBECONFIG is set."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest
import yaml

from engine.errors import SpecError
from engine.pipeline.executors.kubernetes import (
    RBAC_RULES,
    KubernetesExecutor,
    KubernetesExecutorConfig,
    load_config,
    pod_state,
)
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from tests.engine.pipeline.executors.remote.kube_jobs_fake import FakeJobsAPI, fake_jobs_api

ROOT = Path(__file__).resolve().parents[5]
NS = "ci"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def kube() -> Iterator[FakeJobsAPI]:
    with fake_jobs_api(_free_port()) as api:
        yield api


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository with one commit (the source the init container fetches)."""
    src = tmp_path / "repo"
    src.mkdir()
    (src / "hello.txt").write_text("hello from the commit\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return src, sha


def _executor(kube: FakeJobsAPI, **extra: Any) -> KubernetesExecutor:
    return KubernetesExecutor(KubernetesExecutorConfig(api_url=kube.url, namespace=NS, poll_interval=0.05, **extra))


def _run(mgr: PipelineManager, jobs: list[dict[str, Any]], run_id: str, **variables: str) -> Any:
    spec = {"name": "k", "source": None, "stages": [{"name": "s", "jobs": jobs}]}
    return anyio.run(lambda: mgr.arun_pipeline(spec, variables, run_id=run_id))


# -- pure ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "expected"), [
    ({}, ("waiting", "Pending", None)),
    ({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]},
     ("waiting", "Pending", None)),
    ({"containerStatuses": [{"state": {"running": {}}}]}, ("running", "", None)),
    ({"containerStatuses": [{"state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}, ("done", "Error", 3)),
    ({"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}}]},
     ("failed", "ErrImagePull: no such image", None)),
    ({"phase": "Failed", "reason": "DeadlineExceeded"}, ("failed", "DeadlineExceeded", None)),
])
def test_pod_state_reads_the_job_container(status: dict[str, Any], expected: tuple[str, str, int | None]) -> None:
    assert pod_state({"status": status}) == expected


def test_an_init_container_that_fails_is_a_source_failure() -> None:
    state, why, _ = pod_state({"status": {"initContainerStatuses": [
        {"state": {"terminated": {"exitCode": 128, "reason": "Error"}}}]}})
    assert state == "failed" and "fetching the source failed (init container exit 128" in why


def test_a_bad_executor_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("namespace: ci\ngit:\n  url: https://example.com/r.git\n  branch: main\n")
    with pytest.raises(SpecError, match=rf"{path}:4:3: git.branch: Extra inputs"):
        load_config(path)


def test_the_documented_role_grants_exactly_what_the_executor_calls() -> None:
    text = (ROOT / "docs" / "executors-remote.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: Role" in b)
    role = next(d for d in yaml.safe_load_all(block) if d and d.get("kind") == "Role")
    granted = {(g, r, tuple(rule["verbs"])) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert granted == set(RBAC_RULES)


# -- against the fake API server ------------------------------------------------------------------------
@pytest.mark.k8s
def test_a_job_attempt_is_a_batch_v1_job_whose_log_and_artifacts_come_back(
        tmp_path: Path, kube: FakeJobsAPI, repo: tuple[Path, str]) -> None:
    src, sha = repo
    ex = _executor(kube, git={"url": str(src)}, image="busybox:1.36")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    jobs = [{"name": "build", "image": "python:3.12-slim", "timeout": 60,
             "resources": {"cpu": "500m", "memory": "256Mi"}, "variables": {"GREETING": "hi"},
             "commands": ["cat hello.txt", "echo \"$GREETING $API_TOKEN\"", "mkdir -p out && echo built > out/app.bin"],
             "artifacts": ["out/"]}]
    run = _run(mgr, jobs, "k8s-basic", CICD_COMMIT=sha, API_TOKEN="s3cr3t-value")
    log = (tmp_path / "ws" / "runs" / "k8s-basic" / "logs" / "build.log").read_text()
    job = run.jobs["build"]
    assert run.status == RunStatus.SUCCEEDED, (job.reason, log)
    assert "hello from the commit" in log and "$ cat hello.txt" in log
    assert "hi ***" in log and "s3cr3t-value" not in log      # masked in the log as for any job
    assert "::cicd-artifacts" not in log                       # the artifact block is taken out of the log
    [art] = job.artifacts
    assert art.path == "out/app.bin" and Path(art.stored_path).read_text() == "built\n"
    assert art.sha256 == hashlib.sha256(b"built\n").hexdigest()
    # The Job as created: one attempt, our retries; the deadline from the timeout; resources; labels.
    created = [json.loads(json.dumps(j)) for j in kube.requests if j[0] == "POST"]
    assert {p for _, p, _ in created} == {f"/api/v1/namespaces/{NS}/secrets", f"/apis/batch/v1/namespaces/{NS}/jobs"}
    name = kube.deletions[0][0]
    assert kube.deletions == [(name, "Foreground")]
    # Every path the executor used is one the module documents.
    used = {(m, re.sub(r"/(jobs|secrets|pods)/[^/]+", r"/\1/{name}", p)) for m, p, _ in kube.requests}
    assert used == {
        ("POST", f"/api/v1/namespaces/{NS}/secrets"), ("DELETE", f"/api/v1/namespaces/{NS}/secrets/{{name}}"),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"), ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{{name}}"),
        ("GET", f"/api/v1/namespaces/{NS}/pods"), ("GET", f"/api/v1/namespaces/{NS}/pods/{{name}}/log"),
    }
    log_queries = [q for m, p, q in kube.requests if p.endswith("/log")]
    assert log_queries == ["container=job&follow=true"]


@pytest.mark.k8s
def test_the_job_manifest_carries_image_resources_deadline_and_no_secret_value(
        tmp_path: Path, kube: FakeJobsAPI, repo: tuple[Path, str]) -> None:
    src, sha = repo
    ex = _executor(kube, git={"url": str(src)})
    seen: list[dict[str, Any]] = []
    original = kube._start_pod

    def spy(ns: str, job: dict[str, Any]) -> None:
        seen.append(json.loads(json.dumps(job)))
        original(ns, job)

    kube._start_pod = spy  # type: ignore[method-assign]
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = _run(mgr, [{"name": "j", "image": "python:3.12-slim", "timeout": 42.5,
                      "resources": {"cpu": "2", "memory": "1Gi"}, "commands": ["true"]}], "k8s-manifest",
               CICD_COMMIT=sha, DB_PASSWORD="hunter2-secret")
    assert run.status == RunStatus.SUCCEEDED
    [job] = seen
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 43 + 5
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [main] = pod["containers"]
    assert main["image"] == "python:3.12-slim"
    assert main["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    [init] = pod["initContainers"]
    assert {e["name"]: e["value"] for e in init["env"]} == {"CICD_GIT_URL": str(src), "CICD_GIT_REF": sha}
    labels = job["metadata"]["labels"]
    assert labels["cicd-mcp/run"] == "k8s-manifest" and labels["cicd-mcp/job"] == "j"
    assert labels["cicd-mcp/executor"] == "kubernetes" and pod and spec["template"]["metadata"]["labels"] == labels
    assert "hunter2-secret" not in json.dumps(job)      # the environment lives in the Secret
    assert main["envFrom"] == [{"secretRef": {"name": job["metadata"]["name"]}}]
    assert kube.secrets == {}                            # and the Secret went with the Job


@pytest.mark.k8s
def test_a_timeout_deletes_the_job_with_foreground_propagation(tmp_path: Path, kube: FakeJobsAPI) -> None:
    ex = _executor(kube)
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = _run(mgr, [{"name": "hang", "timeout": 1.5, "commands": ["echo waiting", "sleep 300"]}], "k8s-timeout")
    assert run.jobs["hang"].status == JobStatus.TIMED_OUT
    assert [p for _, p in kube.deletions] == ["Foreground"]
    assert kube.jobs == {} and kube.secrets == {}
    deadline = time.monotonic() + 5
    while kube.running_processes():
        assert time.monotonic() < deadline, "the pod's process survived the Job's deletion"
        time.sleep(0.05)


@pytest.mark.k8s
def test_a_failing_command_fails_the_job_and_a_missing_image_is_infrastructure(
        tmp_path: Path, kube: FakeJobsAPI) -> None:
    ex = _executor(kube, start_timeout=5)
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = _run(mgr, [{"name": "fails", "commands": ["echo about to fail", "exit 7"]},
                     {"name": "noimage", "image": "registry.example/missing:1", "commands": ["true"]}], "k8s-fail")
    assert run.jobs["fails"].status == JobStatus.FAILED and run.jobs["fails"].reason == "exited with code 7"
    assert run.jobs["noimage"].status == JobStatus.FAILED
    assert "ErrImagePull" in (run.jobs["noimage"].reason or "")
    classes = {r["job"]: r["failure_class"] for r in mgr.store.query(
        "SELECT job, failure_class FROM attempts WHERE run_id = 'k8s-fail'")}
    assert classes == {"fails": "failure", "noimage": "infrastructure"}


@pytest.mark.k8s
@pytest.mark.parametrize(("missing", "words"), [
    (("create", "jobs.batch"), ["may not create jobs.batch", "verb 'create'", "resource 'jobs'", "group 'batch'"]),
    (("get", "pods/log"), ["may not get pods/log", "verb 'get'", "resource 'pods/log'", "group ''"]),
    (("create", "secrets"), ["may not create secrets", "verb 'create'", "resource 'secrets'"]),
])
def test_an_rbac_refusal_names_the_missing_verb_and_resource(
        tmp_path: Path, kube: FakeJobsAPI, missing: tuple[str, str], words: list[str]) -> None:
    kube.allowed = {(verb, resource) for group, resource_name, verbs in RBAC_RULES for verb in verbs
                    for resource in [f"{resource_name}.{group}" if group else resource_name]} - {missing}
    ex = _executor(kube)
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = _run(mgr, [{"name": "j", "commands": ["echo hi"]}], "k8s-rbac")
    reason = run.jobs["j"].reason or ""
    assert run.jobs["j"].status == JobStatus.FAILED
    for word in words:
        assert word in reason, reason
    assert "403" in reason or "forbidden" in reason
    assert kube.jobs == {} and kube.running_processes() == 0


@pytest.mark.k8s
def test_recovery_deletes_a_dead_runners_jobs_found_by_label(tmp_path: Path, kube: FakeJobsAPI) -> None:
    ex = _executor(kube)
    records: list[dict[str, Any]] = []
    from engine.pipeline.executors.base import JobCommand
    from engine.pipeline.logs import LogWriter

    ws = tmp_path / "w"
    ws.mkdir()
    command = JobCommand(job="long", commands=("sleep 300",), env={"CICD_RUN_ID": "dead-run"}, cwd=ws, workspace=ws)

    writer = LogWriter(tmp_path / "long.log")

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.run, command, writer, records.append)
            deadline = time.monotonic() + 10
            while not (records and kube.running_processes()):
                assert time.monotonic() < deadline
                await anyio.sleep(0.05)
            # A new runner process (a new executor) recovers from the stored record.
            assert await anyio.to_thread.run_sync(KubernetesExecutor(ex.config).recover, records[0])
            tg.cancel_scope.cancel()

    try:
        anyio.run(scenario)
    finally:
        writer.close()
    assert records[0]["run"] == "dead-run" and records[0]["job_label"] == "long"
    lists = [q for m, p, q in kube.requests if m == "GET" and p.endswith("/jobs")]
    assert [parse_qs(q)["labelSelector"] for q in lists] == [
        ["cicd-mcp/executor=kubernetes,cicd-mcp/run=dead-run,cicd-mcp/job=long"]]
    assert kube.jobs == {} and kube.secrets == {} and kube.running_processes() == 0


# -- a real cluster -----------------------------------------------------------------------------------------
@pytest.mark.k8s
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster (set KUBECONFIG)")
def test_on_a_real_cluster(tmp_path: Path) -> None:
    ns = os.environ.get("CICD_K8S_NAMESPACE", "default")
    ex = KubernetesExecutor(KubernetesExecutorConfig(namespace=ns, image="busybox:1.36", start_timeout=300))
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = _run(mgr, [{"name": "hello", "timeout": 300, "resources": {"cpu": "100m", "memory": "32Mi"},
                      "commands": ["echo hello from $(hostname)", "mkdir out && echo x > out/f"],
                      "artifacts": ["out/"]},
                     {"name": "slow", "timeout": 5, "commands": ["sleep 120"]}], "k8s-real")
    log = (tmp_path / "ws" / "runs" / "k8s-real" / "logs" / "hello.log").read_text()
    assert run.jobs["hello"].status == JobStatus.SUCCEEDED, (run.jobs["hello"].reason, log)
    assert "hello from cicd-" in log
    assert [a.path for a in run.jobs["hello"].artifacts] == ["out/f"]
    assert run.jobs["slow"].status == JobStatus.TIMED_OUT
