"""DockerExecutor: a job's commands in a container on a Docker engine (`image:`, `services:`).

Theory of operation. The engine is reached through the docker SDK (`DOCKER_HOST`, else the
local socket). A job's image must already be on the engine: nothing is pulled (a missing image
is an `infrastructure` failure naming it, retryable by `retry.when`). The job's workspace and
HOME are bind-mounted at the same paths, the job's commands run as one script under the image's
`sh -e` (or the exact argv), with the job's own variables (not the host's environment) and
`init` as PID 1, so a stop reaches every process of the container. `network: false` runs it
with no network. Output is streamed from the container's attach stream into the job's
`LogWriter` by a worker thread; the exit code comes from `wait`.

`services:` are started first, on a network of the job's own (`cicd-<run>-<job>`) where each
answers to its alias; they, the network and the job's container are removed when the job ends.
Every container carries labels (`io.cicd-mcp.run`, `.job`, `.executor`) so that recovery (and
an operator: `docker ps --filter label=io.cicd-mcp.executor=docker`) can find and reap them; the
recovery record names the engine, the containers and the network.

Errors of the docker SDK and of the transport are translated here, once: an engine that is
unreachable or goes away mid-job makes the attempt an `infrastructure` failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import anyio.to_thread

from engine.pipeline.executors.base import CommandResult, JobCommand, OnStart, RecoveryRecord
from engine.pipeline.executors.local import COOKIE, _script
from engine.pipeline.logs import LogWriter

__all__ = ["LABEL", "DockerExecutor"]

LABEL = "io.cicd-mcp"
_HOST_ONLY = frozenset({"PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "TERM", "LANG", "_"})


class _EngineGone(Exception):
    """The Docker engine could not be reached or stopped answering."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Docker SDK and transport errors -> _EngineGone (the one place they are mapped)."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.ImageNotFound:
        raise
    except docker.errors.APIError as exc:
        raise _EngineGone(f"{what}: {exc.explanation or exc}") from exc
    except (requests.RequestException, docker.errors.DockerException, OSError) as exc:
        raise _EngineGone(f"{what}: the Docker engine is unreachable or went away ({exc})") from exc


def _job_env(command: JobCommand) -> dict[str, str]:
    """The job's own variables: what the runner added to the host's environment (the image has its own PATH)."""
    return {k: v for k, v in command.env.items()
            if k not in _HOST_ONLY and (os.environ.get(k) != v or k.startswith("CICD"))}


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:40] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


class DockerExecutor:
    """Runs jobs in containers. `base_url`: the engine (default DOCKER_HOST); `grace`: seconds before SIGKILL."""

    name = "docker"

    def __init__(self, *, base_url: str | None = None, grace: float = 5.0) -> None:
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.grace = grace
        self._limiter = anyio.CapacityLimiter(16)

    def set_capacity(self, workers: int) -> None:
        self._limiter.total_tokens = max(self._limiter.total_tokens, 2 * workers + 4)

    def _docker(self, base_url: str | None = None) -> Any:
        """A client of its own for each job (closed with it): no connection outlives its job."""
        import docker

        return docker.DockerClient(base_url=base_url or self.base_url, timeout=60)

    async def prepare(self, command: JobCommand) -> None:
        if command.home is not None:
            command.home.mkdir(parents=True, exist_ok=True)

    def recover(self, record: RecoveryRecord) -> bool:
        """Remove the containers and the network a dead runner left (found by id, then by label)."""
        killed = False
        client = None
        try:
            client = self._docker(str(record.get("base_url") or "") or None)   # the engine the job ran on
            ids = [str(i) for i in record.get("containers", [])]
            run, job = record.get("run"), record.get("job")
            if run and job:
                with _translated("listing the job's containers"):
                    ids += [c.id for c in client.containers.list(all=True, filters={
                        "label": [f"{LABEL}.run={run}", f"{LABEL}.job={job}"]})]
            for cid in dict.fromkeys(ids):
                with contextlib.suppress(Exception):
                    client.containers.get(cid).remove(force=True)
                    killed = True
            if record.get("network"):
                with contextlib.suppress(Exception):
                    client.networks.get(record["network"]).remove()
        except Exception:   # recovery does what it can; an engine that is gone took the containers with it
            return killed
        finally:
            if client is not None:
                client.close()
        return killed

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Run the job's commands in a container to the end (see the module docstring)."""
        if command.image is None:
            return CommandResult(exit_code=None, infrastructure_error=(
                f"job {command.job} runs on docker but names no image (add image: to the job)"))
        state: dict[str, Any] = {"containers": [], "network": None, "client": None}
        finished = threading.Event()
        try:
            return await anyio.to_thread.run_sync(self._work, command, log, on_start, state, finished,
                                                  abandon_on_cancel=True, limiter=self._limiter)
        except BaseException:
            with anyio.CancelScope(shield=True):
                # The worker may still be starting containers: what it records is removed once it stops.
                state["cancelled"] = True
                await anyio.to_thread.run_sync(self._kill, state)
                with anyio.move_on_after(self.grace + 10):
                    while not finished.is_set():
                        await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(self._cleanup, state, True)
            raise

    # -- in a worker thread -------------------------------------------------------------------
    def _work(self, command: JobCommand, log: LogWriter, on_start: OnStart | None, state: dict[str, Any],
              finished: threading.Event) -> CommandResult:
        import docker.errors

        try:
            client = state["client"] = self._docker()
            image = command.image
            assert image is not None
            try:
                with _translated(f"looking up image {image}"):
                    client.images.get(image)
                for service_image, _alias in command.services:
                    with _translated(f"looking up image {service_image}"):
                        client.images.get(service_image)
            except docker.errors.ImageNotFound as exc:
                missing = str(exc.explanation or exc)
                name = next((i for i in (image, *(s for s, _ in command.services)) if i in missing), image)
                return CommandResult(exit_code=None, infrastructure_error=(
                    f"image {name!r} is not on the Docker engine at {self.base_url}; images are never pulled: "
                    f"build or pull it there first (docker pull {name})"))
            labels = {f"{LABEL}.run": command.run_id, f"{LABEL}.job": command.job, f"{LABEL}.executor": self.name}
            record: RecoveryRecord = {"base_url": self.base_url, "run": command.run_id, "job": command.job,
                                      "containers": state["containers"]}
            network_name = None
            if command.services and command.network:
                network_name = f"cicd-{_slug(command.run_id + '-' + command.job)}"
                with _translated("creating the job's network"):
                    client.networks.create(network_name, labels=labels, check_duplicate=True)
                state["network"] = record["network"] = network_name
                for service_image, alias in command.services:
                    with _translated(f"starting service {alias} ({service_image})"):
                        svc = client.containers.create(service_image, labels={**labels, f"{LABEL}.service": alias},
                                                       detach=True, init=True)
                        state["containers"].append(svc.id)
                        client.networks.get(network_name).connect(svc, aliases=[alias])
                        svc.start()
                    log.note(f"service {alias} ({service_image}) started")
            if state.get("cancelled"):
                return CommandResult(exit_code=None, infrastructure_error="cancelled before the job started")
            argv = list(command.argv) if command.argv is not None else ["sh", "-e", "-c", _script(command.commands)]
            binds = {str(command.workspace): {"bind": str(command.workspace), "mode": "rw"}}
            if command.home is not None:
                binds[str(command.home)] = {"bind": str(command.home), "mode": "rw"}
            env = _job_env(command)
            env.pop(COOKIE, None)
            if command.home is not None:
                env["HOME"] = str(command.home)
            options: dict[str, Any] = {"network_disabled": True} if not command.network else (
                {"network": network_name} if network_name else {})
            with _translated(f"creating the job's container from {image}"):
                container = client.containers.create(
                    image, argv, working_dir=str(command.cwd), environment=env, volumes=binds, labels=labels,
                    init=True, detach=True, **options)
            state["containers"].append(container.id)
            with _translated("starting the job's container"):
                container.start()
                # `logs` from the start, followed (an attach socket of the SDK is never closed properly).
                stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
            if on_start is not None:
                on_start(record)
            try:
                with _translated("reading the job's output"):
                    for chunk in stream:
                        log.feed(chunk)
                with _translated("waiting for the job's container"):
                    status = container.wait(timeout=60 * 60 * 24 * 7)
            finally:
                stream.close()
                log.flush()
            code = int(status.get("StatusCode", -1))
            if status.get("Error"):
                return CommandResult(exit_code=None, infrastructure_error=f"the container failed: {status['Error']}")
            return CommandResult(exit_code=code if code >= 0 else 128 - code,
                                 signal=code - 128 if code > 128 else None)
        except _EngineGone as exc:
            # Calls to an engine that is gone only fail (and the SDK leaks the socket of each failed
            # connect): what it ran is left to its labels and to recovery.
            state["gone"] = True
            return CommandResult(exit_code=None, infrastructure_error=str(exc))
        finally:
            finished.set()
            if not state.get("cancelled"):
                self._cleanup(state, True)

    def _kill(self, state: Mapping[str, Any]) -> None:
        client = state["client"]
        if client is None:
            return
        for cid in list(state["containers"]):
            with contextlib.suppress(Exception):
                client.containers.get(cid).kill()

    def _cleanup(self, state: dict[str, Any], close: bool = False) -> None:
        client = state["client"]
        if client is None:
            return
        for cid in [] if state.get("gone") else list(state["containers"]):
            with contextlib.suppress(Exception):
                client.containers.get(cid).remove(force=True)
        state["containers"].clear()
        if state.get("network") and not state.get("gone"):
            with contextlib.suppress(Exception):
                client.networks.get(state["network"]).remove()
            state["network"] = None
        if close:
            state["client"] = None
            client.close()
