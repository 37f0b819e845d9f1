"""environment_status, stop_service, get_service_logs: what runs in an environment, stopping it,
and what it printed; thin calls into engine.deploy's orchestrator, answers checked against the world."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from server.gate import Confirmed, state_of
from server.models import (
    DeploymentBrief,
    EnvironmentStatusInput,
    EnvironmentStatusOutput,
    GetServiceLogsInput,
    GetServiceLogsOutput,
    InstanceStatus,
    ServiceLog,
    StopServiceInput,
    StopServiceOutput,
)
from server.state import AppState
from server.tools._errors import did_you_mean, tool_errors
from server.tools._paths import confined_config_path
from server.tools._present import iso
from server.tools._registry import ToolSpec
from server.trust import Level

if TYPE_CHECKING:
    from engine.deploy.orchestrator import DeploymentOrchestrator
    from engine.deploy.targets.base import Instance

__all__ = ["SPECS", "find_environment"]

_PROBE_SECONDS = 0.5


def _answers(host: str, port: int | None) -> bool | None:
    """Whether something accepts a TCP connection there (None: no port to try)."""
    if port is None:
        return None
    try:
        with socket.create_connection((host, port), timeout=_PROBE_SECONDS):
            return True
    except OSError:
        return False


def _orchestrator(state: AppState, config_path: str | None) -> DeploymentOrchestrator:
    from engine.deploy.orchestrator import DeploymentOrchestrator

    config = confined_config_path(config_path, state.settings) if config_path else None
    return DeploymentOrchestrator(config, store=state.store, settings=state.settings)


def find_environment(orch: DeploymentOrchestrator, name: str) -> Any:
    """Raises: NotFoundError: no such environment (the near names and the known ones are listed)."""
    from engine.deploy.history import EnvironmentStore
    from engine.errors import NotFoundError

    try:
        return orch.get_environment(name)
    except NotFoundError:
        known = sorted(set(orch.environments) | set(EnvironmentStore(orch.store).names()))
        raise NotFoundError(f"unknown environment {name!r}{did_you_mean(name, known)}; known environments: "
                            + (", ".join(known) or "none yet (deploy with a config_path first)")) from None


def _service(orch: DeploymentOrchestrator, env: Any, name: str | None) -> str:
    """The service a call is about: `name`, checked against what the environment has known.

    Raises:
        NotFoundError: the environment never had a service `name` (near names listed).
    """
    from engine.errors import NotFoundError

    if name is None or name == env.service_name:
        return str(env.service_name)
    known = sorted({env.service_name} | {d.service for d in orch.history.recent(env.name, limit=200)})
    if name in known:
        return name
    raise NotFoundError(f"unknown service {name!r} in {env.name}{did_you_mean(name, known)}; services there: "
                        + ", ".join(known))


async def _instances(orch: DeploymentOrchestrator, env_name: str, service: str,
                     ) -> list[tuple[Instance, str, bool | None]]:
    """(instance, address, answers) of what runs now."""
    out = []
    for inst in await orch.service_instances(env_name, service):
        host: str = inst.host
        port: int | None = inst.port
        try:
            addr = await orch.instance_address(env_name, inst)
            host, port = addr.host, addr.port
        except Exception:  # noqa: BLE001 - an instance whose address cannot be read is still listed
            pass
        answers: bool | None = await anyio.to_thread.run_sync(_answers, host, port) if inst.alive else False
        out.append((inst, f"{host}:{port}" if port else host, answers))
    return out


async def environment_status(args: EnvironmentStatusInput, ctx: Context) -> EnvironmentStatusOutput:
    """What is live in an environment, read from the world: version, instances with address,
    health and since when, the lock holder, recent deployments."""
    state = state_of(ctx)
    with tool_errors(state):
        orch = _orchestrator(state, args.config_path)
        try:
            env = find_environment(orch, args.environment)
            service = _service(orch, env, args.service)
            found = await _instances(orch, env.name, service)
            history = orch.history
            recorded = history.live_release(env.name, service)
            holder = history.active(env.name)
            recent = history.recent(env.name, limit=args.deployments)
        finally:
            await orch.aclose()
        started: dict[str, float | None] = {}
        for rec in recent:
            started[rec.deployment_id] = rec.finished_at or rec.started_at
        instances = [
            InstanceStatus(slot=i.slot, address=addr, version=i.version, color=i.color, alive=i.alive,
                           answers=answers, ref=i.ref, deployment_id=i.deployment_id,
                           since=iso(started.get(i.deployment_id or ""))) for i, addr, answers in found
        ]
        live = sorted({i.version for i, _, _ in found if i.alive and i.version})
        healthy = sum(1 for x in instances if x.alive and x.answers is not False)
        summary = (f"{service} in {env.name}: " + (f"live {', '.join(live)} on {healthy}/{len(instances)} "
                                                   "instance(s) answering" if live else "nothing running"))
        if recorded is not None and recorded.version not in live:
            summary += f"; last verified release {recorded.version} is not running"
        if holder is not None:
            summary += f"; locked by deployment {holder.deployment_id} ({holder.status})"
        return EnvironmentStatusOutput(
            summary=summary, environment=env.name, service=service, live_versions=live,
            recorded_live_version=recorded.version if recorded else None, instances=instances,
            lock_holder=f"deployment {holder.deployment_id} ({holder.status})" if holder else None,
            last_deployments=[DeploymentBrief(deployment_id=r.deployment_id, version=r.version, status=str(r.status),
                                              strategy=r.strategy, created=iso(r.created_at) or "",
                                              reason=(r.reason or "")[:200] or None) for r in recent],
        )


async def stop_service(args: StopServiceInput, ctx: Context, confirmed: Confirmed) -> StopServiceOutput:
    """Stop (undeploy) a service in an environment: every instance is stopped and checked gone."""
    state = state_of(ctx)
    with tool_errors(state):
        orch = _orchestrator(state, args.config_path)
        try:
            env = find_environment(orch, args.environment)
            service = _service(orch, env, args.service)
            before = await _instances(orch, env.name, service)
            stopped = await orch.stop_service(env.name, service)
            after = await orch.service_instances(env.name, service)
        finally:
            await orch.aclose()
        still = [i for i in after if i.alive]
        listening = []
        for _, addr, _ in before:
            host, port = _split(addr)
            if await anyio.to_thread.run_sync(_answers, host, port):
                listening.append(addr)
        summary = (f"{service} in {env.name}: stopped {len(stopped)} instance(s)"
                   + (f" ({', '.join(sorted({i.version or '?' for i in stopped}))})" if stopped else
                      " (nothing was running)"))
        if still:
            summary += f"; {len(still)} still running: " + ", ".join(i.slot for i in still)
        if listening:
            summary += "; something still answers at " + ", ".join(listening)
        return StopServiceOutput(
            summary=summary, environment=env.name, service=service,
            stopped=[i.slot for i in stopped], still_running=[i.slot for i in still], still_answering=listening,
        )


def _split(addr: str) -> tuple[str, int | None]:
    host, _, port = addr.rpartition(":")
    return host, int(port) if port.isdigit() else None


async def get_service_logs(args: GetServiceLogsInput, ctx: Context) -> GetServiceLogsOutput:
    """Recent output of a deployed service's instances, bounded."""
    from engine.pipeline.logs import cut_line
    from server.tools._budget import max_chars

    state = state_of(ctx)
    budget = max_chars(args.max_chars)
    with tool_errors(state):
        orch = _orchestrator(state, args.config_path)
        try:
            env = find_environment(orch, args.environment)
            service = _service(orch, env, args.service)
            found = await orch.service_instances(env.name, service)
            if args.slot is not None:
                slots = [i.slot for i in found]
                found = [i for i in found if i.slot == args.slot]
                if not found:
                    from engine.errors import NotFoundError

                    raise NotFoundError(f"{service} in {env.name} has no instance in slot {args.slot!r}"
                                        f"{did_you_mean(args.slot, slots)}; slots: {', '.join(slots) or 'none'}")
            per = max(300, min(args.max_bytes, (int(budget * 0.75) - 300) // max(1, len(found))))
            logs = []
            for inst in found:
                text = await anyio.to_thread.run_sync(orch.service_log, env.name, inst, per)
                if text is None:
                    logs.append(ServiceLog(slot=inst.slot, version=inst.version, alive=inst.alive, text="",
                                           note="this target kind does not keep the instance's output"))
                    continue
                lines = text.splitlines()
                if len(text) >= per and lines:
                    lines = lines[1:]   # the first line is partial
                lines = [cut_line(line, 400) for line in lines]
                logs.append(ServiceLog(slot=inst.slot, version=inst.version, alive=inst.alive, text="\n".join(lines),
                                       note=f"last {len(lines)} line(s), at most {per} bytes"
                                       + ("; earlier output left out: raise max_bytes / max_chars" if len(text) >= per
                                          else "")))
        finally:
            await orch.aclose()
        summary = f"output of {len(logs)} instance(s) of {service} in {env.name}"
        if not logs:
            summary += " (nothing is running)"
        return GetServiceLogsOutput(summary=summary, environment=env.name, service=service, logs=logs)


_DEPLOY = ("engine.deploy.orchestrator",)


def _environment_of(arguments: dict[str, Any], _state: AppState) -> str | None:
    env = arguments.get("environment")
    return env if isinstance(env, str) else None


SPECS = [
    ToolSpec(
        name="environment_status", fn=environment_status, input_model=EnvironmentStatusInput,
        title="Environment status", description=environment_status.__doc__ or "",
        annotations=ToolAnnotations(title="Environment status", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=True),
        default_level=Level.UNTRUSTED, requires=_DEPLOY,
    ),
    ToolSpec(
        name="stop_service", fn=stop_service, input_model=StopServiceInput, title="Stop a service",
        description=stop_service.__doc__ or "",
        annotations=ToolAnnotations(title="Stop a service", read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=True, open_world_hint=True),
        default_level=Level.TRUSTED, requires=_DEPLOY, environment=_environment_of,
    ),
    ToolSpec(
        name="get_service_logs", fn=get_service_logs, input_model=GetServiceLogsInput,
        title="Read a service's output", description=get_service_logs.__doc__ or "",
        annotations=ToolAnnotations(title="Read a service's output", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=True),
        default_level=Level.VERIFIED, requires=_DEPLOY,
    ),
]
