"""Deployment configuration: environments, health checks, hooks; YAML with file:line errors.

An environment's `target:` and `router:` mappings are validated by the model their kind
registers (`TARGETS[kind].config_model`, `ROUTERS[kind].config_model`), so a kind's settings
live beside its implementation and errors still name the field and the line.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from engine.deploy.routers.base import ROUTERS, RouterConfig
from engine.deploy.targets.base import TARGETS, TargetConfig
from engine.errors import InputError, SpecError, SpecIssue

__all__ = [
    "CommandCheck",
    "DeploymentConfig",
    "Environment",
    "EnvironmentType",
    "HealthCheck",
    "Hook",
    "HttpCheck",
    "TcpCheck",
    "IMPLIED_SSH_DEFAULTS",
    "check_release_names",
    "implied_target",
    "load_deployment_config",
    "parse_target_config",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# A version is a directory name (releases/<service>/<version>), a label, an image tag and a
# {version} in shell commands: the characters of a Docker tag, starting with a letter or digit,
# so that it is never '.' or '..', an option ('-x') or a path ('a/b').
_VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def check_release_names(service: str, version: str) -> None:
    """Refuse a service or version that cannot safely name a release directory, label or tag.

    Raises:
        InputError: the service or version does not match its pattern (named in the message).
    """
    if not re.fullmatch(_VERSION, version):
        raise InputError(
            f"version {version!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (as in a Docker image tag; write semver build metadata '1.2.3+b4' as '1.2.3_b4')"
        )
    if not re.fullmatch(_NAME, service):
        raise InputError(
            f"service {service!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )


class EnvironmentType(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    TESTING = "testing"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CheckBase(_Model):
    name: str | None = Field(default=None, description="Shown in logs and events.")
    timeout: float = Field(default=2.0, gt=0, le=600, description="Seconds one probe may take.")
    interval: float = Field(default=1.0, ge=0, le=600, description="Seconds between probes.")
    retries: int = Field(default=10, ge=1, le=10_000, description="Probes made at most before the check fails.")
    success_threshold: int = Field(default=1, ge=1, le=1000, description="Consecutive passes that make it healthy.")
    failure_threshold: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Consecutive failures that fail the check early (default: only `retries` ends it).",
    )
    initial_delay: float = Field(default=0.0, ge=0, le=3600, description="Seconds to wait before the first probe.")


class HttpCheck(_CheckBase):
    """An HTTP request to each instance; `{host}` and `{port}` are the instance's address."""

    type: Literal["http"] = "http"
    url: str = Field(default="http://{host}:{port}/health", description="URL template with {host} and {port}.")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect_status: int | list[int] = Field(default=200, description="Status code(s) that count as healthy.")
    body_contains: str | None = Field(default=None, description="Text the body must contain.")
    body_regex: str | None = Field(default=None, description="Regular expression the body must match.")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        probe = v.replace("{host}", "h").replace("{port}", "1")
        if "{" in probe or "}" in probe:
            raise ValueError("only {host} and {port} may be substituted in the URL")
        if not probe.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v

    @property
    def expected(self) -> frozenset[int]:
        return frozenset([self.expect_status] if isinstance(self.expect_status, int) else self.expect_status)


class TcpCheck(_CheckBase):
    """A TCP connection to the instance (or `port`)."""

    type: Literal["tcp"] = "tcp"
    host: str = "{host}"
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: the instance's port.")


class CommandCheck(_CheckBase):
    """A shell command run on the engine's machine; exit status 0 is healthy. {host}/{port} substituted."""

    type: Literal["command"] = "command"
    command: str = Field(min_length=1)


HealthCheck = Annotated[HttpCheck | TcpCheck | CommandCheck, Field(discriminator="type")]


class Hook(_Model):
    """A shell command run on the engine's machine before or after a deployment.

    It sees DEPLOY_ID, DEPLOY_NAME, DEPLOY_SERVICE, DEPLOY_ENVIRONMENT, DEPLOY_VERSION and
    DEPLOY_PREVIOUS_VERSION in its environment. A bare string is the command.
    """

    command: str = Field(min_length=1)
    timeout: float = Field(default=300.0, gt=0, le=24 * 3600)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


def _hook(v: Any) -> Any:
    return {"command": v} if isinstance(v, str) else v


def _check_type(v: Any) -> Any:
    """A check without `type`, as the original design wrote them: `{"url": ...}` is HTTP,
    `{"command": ...}` a command, `{"host"/"port": ...}` TCP."""
    if not isinstance(v, dict) or "type" in v:
        return v
    for key, kind in (("url", "http"), ("command", "command"), ("port", "tcp"), ("host", "tcp")):
        if key in v:
            return {"type": kind, **v}
    return v


def _registry_model(registry: Any, raw: Any, what: str) -> Any:
    """The kind's config model for a raw mapping (InputError-free: ValueError for pydantic)."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a mapping with a `kind`")
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"{what} needs a `kind` ({', '.join(sorted(registry))})")
    try:
        model = registry[kind].config_model
    except InputError as exc:
        raise ValueError(str(exc)) from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(e, what) for e in exc.errors())) from None


def _describe(err: Any, prefix: str = "") -> str:
    loc = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
    return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))


class Environment(_Model):
    """Where and how a service is deployed.

    `host`, `port`, `user`, `docker_registry` are the general fields of the original API;
    targets use them as defaults where their own settings leave a value out. An environment
    with a `host` and no `target:` is an SSH target on that host (`implied_target`);
    `docker_registry` is where a docker target tags and pushes the images it builds.
    """

    name: str = Field(pattern=_NAME)
    type: EnvironmentType = EnvironmentType.DEVELOPMENT
    service: str | None = Field(default=None, pattern=_NAME, description="Service name; default: the name.")
    target: SerializeAsAny[TargetConfig] | None = Field(
        default=None,
        description="Where the service runs; default kind: DEPLOY_TARGET.",
    )
    router: SerializeAsAny[RouterConfig] | None = None
    health_checks: list[HealthCheck] = Field(default_factory=list)
    pre_deploy_hooks: list[Hook] = Field(default_factory=list)
    post_deploy_hooks: list[Hook] = Field(default_factory=list)
    strategy: str | None = Field(default=None, description="Default strategy here; else DEPLOY_STRATEGY.")
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    rollback_on_failure: bool | None = None
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the service.")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    docker_registry: str | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        return None if v is None else _registry_model(TARGETS, v, "target")

    @field_validator("router", mode="before")
    @classmethod
    def _router(cls, v: Any) -> Any:
        return None if v is None else _registry_model(ROUTERS, v, "router")

    @field_validator("health_checks", mode="before")
    @classmethod
    def _checks(cls, v: Any) -> Any:
        return [_check_type(c) for c in v] if isinstance(v, list) else v

    @field_validator("pre_deploy_hooks", "post_deploy_hooks", mode="before")
    @classmethod
    def _hooks(cls, v: Any) -> Any:
        return [_hook(h) for h in v] if isinstance(v, list) else v

    @property
    def service_name(self) -> str:
        return self.service or self.name


IMPLIED_SSH_DEFAULTS: dict[str, Any] = {
    "deploy_path": "apps/{service}",
    "command": "./start.sh {port}",
    "ports": [8000],
}
"""What an environment given only `host`/`port`/`user` deploys with: releases under
~/apps/<service> on the host, started by the release's own `start.sh <port>` on port 8000.
Give a `target: {kind: ssh, ...}` to choose otherwise."""


def implied_target(env: Environment) -> TargetConfig | None:
    """The target an environment without `target:` implies: SSH to its `host`, or None."""
    if env.host is None:
        return None
    return parse_target_config({"kind": "ssh", **IMPLIED_SSH_DEFAULTS})


class DeploymentConfig(_Model):
    environments: list[Environment] = Field(default_factory=list)

    @field_validator("environments")
    @classmethod
    def _unique(cls, v: list[Environment]) -> list[Environment]:
        seen: set[str] = set()
        for env in v:
            if env.name in seen:
                raise ValueError(f"environment {env.name!r} is defined twice")
            seen.add(env.name)
        return v


def parse_target_config(raw: Any) -> TargetConfig:
    """Validate a `target:` mapping by its kind's model.

    Raises:
        InputError: unknown kind or invalid settings (the message names the field).
    """
    try:
        model: TargetConfig = _registry_model(TARGETS, raw, "target")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return model


def load_deployment_config(path: str | os.PathLike[str]) -> DeploymentConfig:
    """Read a deployment file (YAML) into a `DeploymentConfig`.

    Raises:
        SpecError: the file is not valid YAML or not a valid deployment config; every issue
            names file:line:column and the field.
        NotFoundError: the file does not exist.
    """
    from engine.spec.yamlpos import load_mapping_file

    p = Path(path)
    data, pos = load_mapping_file(p, "deployment config", "a deployment config is a mapping with `environments:`")
    issues: list[SpecIssue] = []
    # Target and router settings are validated by their kind's model first, so that their
    # errors carry the exact line of the offending field (a nested ValueError would not).
    envs = data.get("environments")
    if isinstance(envs, list):
        for i, env in enumerate(envs):
            if not isinstance(env, dict):
                continue
            for key, registry in (("target", TARGETS), ("router", ROUTERS)):
                raw = env.get(key)
                if raw is None:
                    continue
                issues.extend(_nested_issues(registry, raw, ("environments", i, key), pos))
    if issues:
        # Report the environment's other problems too, in one go: validate without target/router.
        data = {
            **data,
            "environments": [
                {k: v for k, v in env.items() if k not in ("target", "router")} if isinstance(env, dict) else env
                for env in envs or []
            ],
        }
    try:
        config = DeploymentConfig.model_validate(data)
    except ValidationError as exc:
        issues += [pos.issue(_clean_loc(err["loc"]), err["msg"]) for err in exc.errors()]
    if issues:
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.column or 0)))
    return config


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union-tag and validator parts from an error location (they are not keys)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or "-" in part and "(" in part):
            continue
        if (
            i >= 2
            and loc[i - 2] == "health_checks"
            and isinstance(loc[i - 1], int)
            and part in ("http", "tcp", "command")
        ):
            continue
        out.append(part)
    return tuple(out)


def _nested_issues(registry: Any, raw: Any, where: tuple[str | int, ...], pos: Any) -> list[SpecIssue]:
    if not isinstance(raw, dict):
        return [pos.issue(where, "must be a mapping with a `kind`")]
    kind = raw.get("kind")
    if not isinstance(kind, str):
        return [pos.issue(where, f"needs a `kind` ({', '.join(sorted(registry))})")]
    try:
        model = registry[kind].config_model
    except InputError as exc:
        return [pos.issue((*where, "kind"), str(exc))]
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return [pos.issue((*where, *err["loc"]), err["msg"]) for err in exc.errors()]
    return []
