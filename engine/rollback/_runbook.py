"""MANUAL rollback runbooks: a plan's steps rendered as markdown with the exact commands for the
target (docker CLI, ssh, kubectl, a local shell) and the router (nginx). Pure: text in, text out.

Renderers are registered by target kind in `RENDERERS`; each turns one step into shell lines.
The commands do what the engine's operations do, so the engine finds the result afterwards
(docker containers carry the same labels, ssh hosts the same `current` link and run files).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.deploy.targets.base import Instance
from engine.rollback.plans import RollbackPlan, RollbackStep

__all__ = ["RENDERERS", "RunbookContext", "render_runbook"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class RunbookContext:
    """What the commands need besides the steps: the target's and router's settings, the checks."""

    target: Mapping[str, Any]
    router: Mapping[str, Any] | None = None
    health_checks: Sequence[Mapping[str, Any]] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = "deploy"
    router_generation: int = 1


Renderer = Callable[[RollbackPlan, RollbackStep, RunbookContext], list[str]]


def _q(text: object) -> str:
    return shlex.quote(str(text))


def _docker_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]", "-", text.lower()).strip("-.") or "svc"


# -- health checks (the same for every target: run on the operator's machine) -----------------
def _check_lines(step: RollbackStep, ctx: RunbookContext, slots: Sequence[Instance]) -> list[str]:
    checks = list(ctx.health_checks) or [{"type": "tcp", "retries": 10, "interval": 0.5, "timeout": 2}]
    lines: list[str] = []
    for slot in slots:
        host, port = slot.host, slot.port
        for check in checks:
            retries = int(check.get("retries", 10))
            interval = float(check.get("interval", 1.0))
            timeout = float(check.get("timeout", 2.0))
            kind = check.get("type", "http")
            if kind == "http":
                url = str(check.get("url", "http://{host}:{port}/health"))
                url = url.replace("{host}", str(host)).replace("{port}", str(port))
                probe = f"curl -fsS -o /dev/null --max-time {timeout:g} {_q(url)}"
                if check.get("body_contains"):
                    probe = f"curl -fsS --max-time {timeout:g} {_q(url)} | grep -qF {_q(check['body_contains'])}"
            elif kind == "tcp":
                tcp = f"</dev/tcp/{host}/{check.get('port') or port}"
                probe = f"timeout {timeout:g} bash -c {_q(tcp)}"
            else:
                cmd = str(check.get("command", "true")).replace("{host}", str(host)).replace("{port}", str(port))
                probe = f"timeout {timeout:g} sh -c {_q(cmd)}"
            lines.append(
                f"ok=0; for i in $(seq {retries}); do if {probe}; then ok=1; break; fi; sleep {interval:g}; done; "
                f'[ "$ok" = 1 ] || {{ echo "{slot.slot} is not healthy: stop here" >&2; exit 1; }}'
            )
    return lines


def _slots(step: RollbackStep) -> list[Instance]:
    # start steps carry slots as instances; verify steps name them by id only
    return [Instance.from_json(s) for s in step.params.get("slots", []) if isinstance(s, dict)]


def _instances(step: RollbackStep) -> list[Instance]:
    return [Instance.from_json(s) for s in step.params.get("instances", [])]


def _verify_slots(plan: RollbackPlan, step: RollbackStep) -> list[Instance]:
    """The slots a verify step checks, with their addresses (found in the plan's start steps)."""
    known: dict[str, Instance] = {}
    for s in plan.steps:
        for inst in [*_slots(s), *_instances(s)]:
            known.setdefault(inst.slot, inst)
    return [known[s] for s in step.params.get("slots", []) if s in known]


# -- docker -------------------------------------------------------------------------------------
def _docker(plan: RollbackPlan, step: RollbackStep, ctx: RunbookContext) -> list[str]:
    cfg = ctx.target
    base = f"docker -H {_q(cfg['base_url'])}" if cfg.get("base_url") else "docker"
    if step.action == "stop_instances":
        return [
            f"{base} stop -t {int(cfg.get('stop_timeout', 10))} {_q(i.ref)}; {base} rm -f {_q(i.ref)}"
            for i in _instances(step)
            if i.ref
        ]
    image = _docker_image(plan, cfg)
    if step.action == "prepare_release":
        pull = cfg.get("pull", "never")
        if pull == "never":
            return [f"{base} image inspect --format '{{{{.Id}}}}' {_q(image)}   # must be on the engine"]
        return [f"{base} pull {_q(image)}"]
    if step.action == "start_release":
        lines = []
        for slot in _slots(step):
            labels = {
                **cfg.get("labels", {}),
                "io.cicd-mcp.environment": plan.environment,
                "io.cicd-mcp.service": slot.service,
                "io.cicd-mcp.slot": slot.slot,
                "io.cicd-mcp.port": str(slot.port),
                "io.cicd-mcp.version": plan.to_version,
                "io.cicd-mcp.deployment-id": plan.to_deployment_id,
                "io.cicd-mcp.color": slot.color or "",
            }
            name = f"{_docker_name(plan.environment)}-{_docker_name(slot.service)}-{slot.slot}-manual"
            parts = [f"{base} rm -f {_q(name)} >/dev/null 2>&1;", base, "run -d --init", f"--name {_q(name)}"]
            parts += [f"--label {_q(f'{k}={v}')}" for k, v in labels.items()]
            parts += [f"-e {_q(f'{k}={v}')}" for k, v in {**cfg.get("env", {}), **ctx.env}.items()]
            bind = cfg.get("bind_address", "127.0.0.1")
            publish = f"{bind}:{slot.port}:{cfg.get('container_port', 8080)}/tcp"
            parts.append(f"-p {_q(publish)}")
            if cfg.get("network"):
                parts.append(f"--network {_q(cfg['network'])}")
            parts.append(_q(image))
            command = cfg.get("command")
            if command:
                args = shlex.split(command) if isinstance(command, str) else list(command)
                parts += [_q(a) for a in args]
            lines.append(" ".join(parts))
        return lines
    if step.action == "verify_health":
        return _check_lines(step, ctx, _verify_slots(plan, step))
    return _route(plan, step, ctx)


def _docker_image(plan: RollbackPlan, cfg: Mapping[str, Any]) -> str:
    from engine.deploy.targets.docker import default_tag, is_build_context

    for artifact in plan.to_artifacts:
        if is_build_context(artifact):
            return default_tag(plan.service, plan.to_version)
        return artifact
    template = cfg.get("image") or "{service}:{version}"
    return str(template).format(service=plan.service, version=plan.to_version, registry="").lstrip("/")


# -- ssh ----------------------------------------------------------------------------------------
def _ssh_host(ctx: RunbookContext, label: str) -> dict[str, Any]:
    for raw in ctx.target.get("hosts", []):
        name = raw.get("name") or f"{raw['host']}:{raw.get('port', 22)}"
        if name == label:
            return dict(raw)
    return {"host": label.rsplit(":", 1)[0], "port": 22}


def _ssh_prefix(ctx: RunbookContext, host: Mapping[str, Any]) -> str:
    cfg = ctx.target
    parts = ["ssh", "-p", str(host.get("port", 22)), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    parts += ["-o", f"UserKnownHostsFile={cfg.get('known_hosts', '~/.ssh/known_hosts')}"]
    if cfg.get("key_file"):
        parts += ["-i", str(cfg["key_file"])]
    user = host.get("user") or cfg.get("user") or ctx.user
    login = f"{user}@{host['host']}"
    return " ".join(_q(p) for p in parts) + f" {_q(login)}"


def _ssh(plan: RollbackPlan, step: RollbackStep, ctx: RunbookContext) -> list[str]:
    cfg = ctx.target
    if step.action in ("verify_health", "route_traffic"):
        return (
            _check_lines(step, ctx, _verify_slots(plan, step))
            if step.action == "verify_health"
            else _route(plan, step, ctx)
        )
    items = _instances(step) if step.action == "stop_instances" else _slots(step)
    if step.action == "prepare_release":
        items = []
        for s in plan.steps:
            items += _slots(s)
    lines: list[str] = []
    seen: set[str] = set()
    for inst in items:
        label = inst.data.get("ssh_host") or inst.slot.rsplit("/", 1)[0]
        host = _ssh_host(ctx, label)
        root = str(host.get("deploy_path") or cfg.get("deploy_path") or "").replace(
            "{service}", _SAFE.sub("_", plan.service) or "_"
        )
        version = _SAFE.sub("_", plan.to_version)
        release = posixpath.join(root, "releases", version)
        slot_name = _SAFE.sub("_", inst.slot.rsplit("/", 1)[-1])
        run = posixpath.join(root, "run", slot_name)
        if step.action == "prepare_release":
            if label in seen:
                continue
            seen.add(label)
            script = f"test -f {_q(release + '/.release.json')} && touch {_q(release)}"
            note = "   # the release must still be on the host (upload its tarball again if not)"
            lines.append(f"{_ssh_prefix(ctx, host)} {_q(script)}{note}")
        elif step.action == "stop_instances":
            script = (
                f"p=$(cat {_q(run + '.pid')} 2>/dev/null) && {{ kill -TERM -$p 2>/dev/null || kill -TERM $p; "
                f"sleep {float(cfg.get('stop_timeout', 5)):g}; kill -KILL -$p 2>/dev/null; true; }}; "
                f"rm -f {_q(run + '.pid')} {_q(run + '.json')} {_q(run + '.release')}"
            )
            lines.append(f"{_ssh_prefix(ctx, host)} {_q(script)}")
        else:
            command = str(cfg.get("command", ""))
            values = {
                "port": str(inst.port),
                "host": inst.host,
                "release_dir": release,
                "current": posixpath.join(root, "current"),
                "deploy_path": root,
                "version": plan.to_version,
                "service": plan.service,
                "color": inst.color or "",
                "slot": inst.slot,
            }
            for key, value in values.items():
                command = command.replace("{" + key + "}", shlex.quote(value))
            log = posixpath.join(root, "logs", f"{slot_name}.log")
            script = (
                f"set -e; cd {_q(root)}; ln -sfn {_q('releases/' + version)} .current-manual; "
                f"mv -T .current-manual current; mkdir -p run logs; echo {_q(version)} > {_q(run + '.release')}; "
                f"cd {_q(release)}; env PORT={inst.port} SERVICE_VERSION={_q(plan.to_version)} "
                f"setsid sh -c {_q('exec ' + command)} </dev/null >>{_q(log)} 2>&1 & echo $! > {_q(run + '.pid')}"
            )
            lines.append(f"{_ssh_prefix(ctx, host)} {_q(script)}")
    return lines


# -- kubernetes ---------------------------------------------------------------------------------
def _kubernetes(plan: RollbackPlan, step: RollbackStep, ctx: RunbookContext) -> list[str]:
    cfg = ctx.target
    ns = cfg.get("namespace", "default")
    kubectl = f"kubectl --context {_q(cfg['context'])}" if cfg.get("context") else "kubectl"
    kubectl += f" -n {_q(ns)}"
    name = str(cfg.get("deployment") or "{service}").replace("{service}", plan.service)
    if step.action == "stop_instances":
        return [
            f"{kubectl} scale deployment/{_q(i.data.get('deployment', name))} --replicas=0" for i in _instances(step)
        ]
    if step.action == "prepare_release":
        image = _docker_image(plan, cfg)
        return [f"# image {image} must be pullable by the cluster"]
    if step.action == "start_release":
        image = _docker_image(plan, cfg)
        container = cfg.get("container") or plan.service
        return [
            f"{kubectl} set image deployment/{_q(name)} {_q(f'{container}={image}')}",
            f"{kubectl} scale deployment/{_q(name)} --replicas={len(_slots(step))}",
        ]
    if step.action == "verify_health":
        return [f"{kubectl} rollout status deployment/{_q(name)} --timeout={int(step.timeout)}s"]
    return [
        f"{kubectl} patch service {_q(plan.service)} -p "
        + _q('{"spec":{"selector":{"version":"' + plan.to_version + '"}}}')
    ]


# -- local --------------------------------------------------------------------------------------
def _local(plan: RollbackPlan, step: RollbackStep, ctx: RunbookContext) -> list[str]:
    cfg = ctx.target
    if step.action == "stop_instances":
        return [
            f"kill -TERM -- -{_q(i.data.get('pgid') or i.ref)} 2>/dev/null; true   # {i.version} on {i.slot}"
            for i in _instances(step)
        ]
    if step.action == "prepare_release":
        return [f"ls {_q(a)} >/dev/null   # artifact of {plan.to_version}" for a in plan.to_artifacts]
    if step.action == "start_release":
        lines = []
        for slot in _slots(step):
            command = str(cfg.get("command", ""))
            values = {
                "port": str(slot.port),
                "host": slot.host,
                "version": plan.to_version,
                "service": plan.service,
                "color": slot.color or "",
                "slot": slot.slot,
                "release_dir": plan.to_artifacts[0] if plan.to_artifacts else ".",
            }
            for key, value in values.items():
                command = command.replace("{" + key + "}", shlex.quote(value))
            lines.append(f"setsid sh -c {_q(command)} </dev/null >/dev/null 2>&1 &")
        return lines
    if step.action == "verify_health":
        return _check_lines(step, ctx, _verify_slots(plan, step))
    return _route(plan, step, ctx)


# -- routers ------------------------------------------------------------------------------------
def _route(plan: RollbackPlan, step: RollbackStep, ctx: RunbookContext) -> list[str]:
    router = ctx.router
    if router is None:
        return ["# no router: nothing to switch"]
    if router.get("kind") != "nginx":
        return [f"# switch the {router.get('kind')} router to send all traffic to {plan.to_version}"]
    from pathlib import Path

    from engine.deploy.routers.base import Backend
    from engine.deploy.routers.nginx import NginxRouterConfig, render_upstream
    from engine.deploy.targets.base import Address

    cfg = NginxRouterConfig.model_validate(dict(router))
    unique: dict[str, Instance] = {}
    for s in plan.steps:
        for slot in _slots(s):
            unique.setdefault(slot.slot, slot)
    backends = [Backend(slot, Address(slot.host, slot.port or 0), 1) for slot in unique.values()]
    text = render_upstream(plan.service, backends, cfg, ctx.router_generation)
    sites = cfg.sites_dir or Path(cfg.conf).parent / "cicd"
    path = sites / f"{re.sub(r'[^A-Za-z0-9_]', '_', plan.service)}.conf"
    nginx = " ".join(_q(p) for p in [cfg.nginx, *(["-p", str(cfg.prefix)] if cfg.prefix else []), "-c", str(cfg.conf)])
    return [f"cat > {_q(str(path))} <<'CICD_EOF'\n{text}CICD_EOF", f"{nginx} -t && {nginx} -s reload"]


RENDERERS: dict[str, Renderer] = {
    "docker": _docker,
    "ssh": _ssh,
    "kubernetes": _kubernetes,
    "local": _local,
}


def render_runbook(plan: RollbackPlan, ctx: RunbookContext) -> str:
    """Markdown: why, what, and per step a fenced `bash` block of the exact commands."""
    render = RENDERERS.get(plan.target_kind)
    out = [
        f"# Manual rollback of {plan.service} in {plan.environment}: {plan.from_version} -> {plan.to_version}",
        "",
        "**This plan is not executable by the engine.** A person runs these commands, in order, "
        "and stops at the first one that fails.",
        "",
        f"- deployment: `{plan.deployment_id}`; live now: version {plan.from_version}",
        *(f"- **warning**: {w}" for w in plan.warnings),
        f"- back to: version {plan.to_version} (made live by `{plan.to_deployment_id}`)",
        f"- reason: {plan.reason or 'not given'}",
        f"- target: {plan.target_kind}; estimated time: {plan.estimated_duration:g}s ({plan.estimate_basis})",
        "",
    ]
    for n, step in enumerate(plan.steps, 1):
        out.append(f"## {n}. {step.name} ({step.action}: {', '.join(step.targets) or '-'})")
        out.append("")
        if render is None:
            out.append(f"No commands are known for target kind {plan.target_kind!r}; do this by hand.")
        else:
            out += ["```bash", *render(plan, step, ctx), "```"]
        out.append("")
    out.append(
        "When every step passed, tell the engine which version is live: "
        f"`RollbackManager(...).confirm_manual('{plan.plan_id}')` checks its health and records it."
    )
    return "\n".join(out) + "\n"
