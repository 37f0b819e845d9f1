"""The trust gate's policy and its one pure decision.

`TrustPolicy` is `trust_policy.yaml` as data. `decide(policy, caller, tool)` takes who is
calling, what they call and where it lands, and returns `Allow`, `Deny(reason)` or
`Confirm(question)`; it does no I/O, so every rule is a table test. Reading the file,
finding the caller's level from a bearer token, asking the human and writing the audit
row happen at the edges (`server/gate.py`).

Theory of operation, in the order `decide` applies the rules:
1. read_only: a tool that is not read-only is refused outright.
2. level: the caller's level must be at least the tool's (the policy's `tools:` entry,
   else the tool's own default, else `default_level` for a tool the server does not know).
3. scope: a scoped token may call only its tools and change only its environments.
4. confirmation: a destructive call that would change an environment listed under
   `confirm.environments` (any of the environments the engine says it changes, not only
   the one its arguments name) needs a human "yes" through MCP elicitation; a client that
   cannot elicit is refused, never assumed to agree.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from engine.errors import SpecError, SpecIssue

__all__ = [
    "Allow",
    "Caller",
    "Confirm",
    "Decision",
    "Deny",
    "Level",
    "LevelLimits",
    "OAuthSettings",
    "PolicyToken",
    "UNKNOWN_ENVIRONMENT",
    "ToolFacts",
    "TrustPolicy",
    "decide",
    "default_policy_path",
    "hash_token",
    "load_policy",
    "parse_policy",
]


class Level(StrEnum):
    UNTRUSTED = "untrusted"
    VERIFIED = "verified"
    TRUSTED = "trusted"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Level) -> bool:
        return self.rank >= other.rank


_RANK = {Level.UNTRUSTED: 0, Level.VERIFIED: 1, Level.TRUSTED: 2}

_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]


def hash_token(token: str) -> str:
    """The form a bearer token is stored and compared in: hex sha256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class PolicyToken(BaseModel):
    """A bearer token the policy grants a level to: by its sha256, or read from an env var at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name = Field(description="Shown in the audit log as token:<name>.")
    level: Level
    sha256: _Sha256 | None = Field(default=None, description="Hex sha256 of the token (never the token).")
    env: str | None = Field(default=None, description="Environment variable holding the token.")
    expires: AwareDatetime | None = Field(
        default=None, description="When the token stops being accepted (ISO 8601 with a timezone); none: never."
    )
    environments: list[_Name] | None = Field(
        default=None, description="The only environments this token's calls may change (none: any)."
    )
    tools: list[_Name] | None = Field(default=None, description="The only tools this token may call (none: any).")

    @model_validator(mode="after")
    def _one_source(self) -> PolicyToken:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of sha256 (hex sha256 of the token) or env (a variable name)")
        return self


class StdioCallers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Level = Field(
        default=Level.UNTRUSTED,
        description="Level of the (single) client on stdio; `serve --trust-level` overrides it.",
    )


def _https_or_loopback(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"{url!r}: use an https:// URL (http:// only for a loopback address)")
    return url


class OAuthSettings(BaseModel):
    """OAuth 2.1 resource-server mode: JWT access tokens from one authorization server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="The authorization server (the tokens' `iss`), as in its metadata.")
    jwks_uri: str = Field(description="Where the issuer publishes its signing keys (JWKS).")
    resource: str = Field(description="This server's URL as clients reach it (e.g. https://ci.example/mcp): the "
                                      "audience (`aud`) a token must carry, and the RFC 9728 `resource`.")
    scopes: dict[str, Level] = Field(
        default_factory=lambda: {"cicd:read": Level.UNTRUSTED, "cicd:write": Level.VERIFIED,
                                 "cicd:admin": Level.TRUSTED},
        description="Scope -> trust level; a token gets the highest level among its scopes.",
    )

    @model_validator(mode="after")
    def _secure_urls(self) -> OAuthSettings:
        for url in (self.issuer, self.jwks_uri, self.resource):
            _https_or_loopback(url)
        if not self.scopes:
            raise ValueError("map at least one scope to a trust level")
        return self


class HttpCallers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    anonymous_level: Level = Field(
        default=Level.UNTRUSTED, description="Level of an HTTP/SSE request without a bearer token."
    )
    tokens: list[PolicyToken] = Field(default_factory=list)
    allowed_hosts: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.:\[\]-]{1,253}$")]] = Field(
        default_factory=list,
        description="Host names clients may reach the server by, besides its bind address and, on loopback, "
                    "localhost / 127.0.0.1 / [::1] (DNS-rebinding protection: any other Host or Origin is refused).",
    )
    oauth: OAuthSettings | None = Field(
        default=None, description="Also accept JWT access tokens from an OAuth 2.1 authorization server.")
    header_timeout: float = Field(default=10.0, gt=0, le=300,
                                  description="Seconds a client has to send a request's headers.")
    body_timeout: float = Field(default=15.0, gt=0, le=3600,
                                description="Seconds a client has to send a request's body once its headers are in.")

    @model_validator(mode="after")
    def _unique(self) -> HttpCallers:
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"token names must be unique; repeated: {', '.join(dupes)}")
        return self


class Confirmation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environments: list[str] = Field(
        default_factory=list,
        description="Environments whose destructive calls need a human confirmation (MCP elicitation).",
    )


class LevelLimits(BaseModel):
    """What one caller (a token, or all anonymous callers together) may hold at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sessions: int = Field(ge=1, le=100_000, description="Open HTTP sessions (idle ones count until they expire).")
    streams: int = Field(ge=1, le=100_000, description="Open SSE streams.")
    calls: int = Field(ge=1, le=100_000, description="Tool calls in progress.")
    expensive_calls: int = Field(ge=1, le=10_000, description="Calls in progress that run a caller's regex (grep).")


def _default_limits() -> dict[Level, LevelLimits]:
    return {
        Level.UNTRUSTED: LevelLimits(sessions=16, streams=4, calls=16, expensive_calls=2),
        Level.VERIFIED: LevelLimits(sessions=64, streams=16, calls=64, expensive_calls=4),
        Level.TRUSTED: LevelLimits(sessions=512, streams=128, calls=512, expensive_calls=8),
    }


class TrustPolicy(BaseModel):
    """trust_policy.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    read_only: bool = Field(default=False, description="Refuse every tool that is not read-only.")
    default_level: Level = Field(
        default=Level.TRUSTED,
        description="Level needed by a tool that neither the policy nor the server knows.",
    )
    tools: dict[str, Level] = Field(default_factory=dict, description="Level each tool needs, by tool name.")
    stdio: StdioCallers = Field(default_factory=StdioCallers)
    http: HttpCallers = Field(default_factory=HttpCallers)
    confirm: Confirmation = Field(default_factory=Confirmation)
    compatibility: bool = Field(
        default=False, description="List the original design's call_module_function (it is callable either way)."
    )
    limits: dict[Level, LevelLimits] = Field(
        default_factory=_default_limits,
        description="Per caller, by level: what an HTTP/SSE caller may hold at once (anonymous callers share one "
                    "allowance). A level left out keeps its default.",
    )
    source: str = Field(default="<built-in>", exclude=True, description="Where the policy was read from.")

    def limits_for(self, level: Level) -> LevelLimits:
        return self.limits.get(level) or _default_limits()[level]

    def env_token_hashes(self, environ: dict[str, str] | None = None) -> dict[str, PolicyToken]:
        """sha256 → token entry for every token of the policy, env tokens read now.

        Raises:
            SpecError: an env token's variable is unset or empty (the server must not start
                with a token that silently matches nothing).
        """
        env = os.environ if environ is None else environ
        out: dict[str, PolicyToken] = {}
        for token in self.http.tokens:
            if token.sha256 is not None:
                out[token.sha256] = token
                continue
            assert token.env is not None
            value = env.get(token.env, "")
            if not value:
                raise SpecError([SpecIssue(
                    f"environment variable {token.env} (token {token.name!r}) is not set",
                    file=self.source, field="http.tokens",
                )])
            out[hash_token(value)] = token
        return out


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the gate found out at the edge."""

    name: str              # stdio | token:<name> | anonymous
    level: Level
    transport: str         # stdio | sse | http | memory
    can_elicit: bool = False
    refused: str | None = None   # set when the caller presented a credential that is not valid
    # A scoped token: the only environments it may change and tools it may call (None: no limit).
    environments: frozenset[str] | None = None
    tools: frozenset[str] | None = None


@dataclass(frozen=True)
class ToolFacts:
    """What the gate needs to know about a tool and this call to it."""

    name: str
    default_level: Level | None   # None: the server has no such tool
    read_only: bool
    destructive: bool
    environment: str | None = None   # where the call lands, when the tool says
    environments: frozenset[str] = frozenset()   # every environment the call would change

    @property
    def targets(self) -> frozenset[str]:
        return self.environments | ({self.environment} if self.environment is not None else set())


@dataclass(frozen=True)
class Allow:
    reason: str
    # The environments the call was found to change, when the gate resolved them: what was decided
    # on, handed to the tool so the engine can refuse anything else (None: not resolved).
    targets: frozenset[str] | None = None


@dataclass(frozen=True)
class Deny:
    reason: str
    unresolved: bool = False   # refused because what the call would change could not be found out


@dataclass(frozen=True)
class Confirm:
    question: str
    environment: str
    targets: frozenset[str] | None = None   # as for Allow


Decision = Allow | Deny | Confirm


UNKNOWN_ENVIRONMENT = "<unknown>"
"""A call whose target environment could not be found out: treated as protected (fail closed)."""


def required_level(policy: TrustPolicy, tool: ToolFacts) -> Level:
    if tool.name in policy.tools:
        return policy.tools[tool.name]
    return tool.default_level if tool.default_level is not None else policy.default_level


def _how_to_get(level: Level, transport: str) -> str:
    if transport in ("http", "sse"):
        return (
            f"send 'Authorization: Bearer <token>' with a token of level {level} or higher "
            f"(an operator creates one with `cicd-mcp token create --level {level}`)"
        )
    return (
        f"the operator must start the server with `--trust-level {level}` or set stdio.level: {level} "
        "in the trust policy"
    )


def decide(policy: TrustPolicy, caller: Caller, tool: ToolFacts) -> Decision:
    """The trust decision for one call. Pure."""
    if caller.refused is not None:
        return Deny(caller.refused)
    if policy.read_only and not tool.read_only:
        return Deny(
            f"the server is in read-only mode (read_only: true in {policy.source}); "
            f"{tool.name!r} changes things and is refused"
        )
    needed = required_level(policy, tool)
    if not caller.level.at_least(needed):
        return Deny(
            f"{tool.name!r} needs trust level {needed}; this caller ({caller.name}) has {caller.level}. "
            f"To get it, {_how_to_get(needed, caller.transport)}."
        )
    if caller.tools is not None and tool.name not in caller.tools:
        return Deny(f"this caller ({caller.name}) is limited to the tools {', '.join(sorted(caller.tools))}; "
                    f"{tool.name!r} is not one of them")
    targets = tool.targets
    if caller.environments is not None and not tool.read_only:
        outside = sorted(targets - caller.environments)
        if outside:
            return Deny(f"this caller ({caller.name}) may change only the environments "
                        f"{', '.join(sorted(caller.environments)) or '(none)'}; {tool.name!r} would change "
                        f"{', '.join(outside)}")
    guarded = policy.confirm.environments
    protected = sorted(e for e in targets if e in guarded or (e == UNKNOWN_ENVIRONMENT and guarded))
    if tool.destructive and protected:
        env = ", ".join(protected)
        if not caller.can_elicit:
            return Deny(
                f"{tool.name!r} on environment {env!r} needs a human confirmation, and this client "
                "cannot ask its user (it did not declare the elicitation capability); use a client "
                "that supports elicitation"
            )
        return Confirm(
            question=f"Allow {tool.name} on the {env!r} environment? It changes what runs there.",
            environment=env,
        )
    return Allow(f"level {caller.level} >= {needed}")


# -- loading --------------------------------------------------------------------------------------


def parse_policy(text: str | bytes, filename: str) -> TrustPolicy:
    """A policy from YAML text (bytes are decoded as UTF-8); every problem reported with file:line and field.

    Raises:
        SpecError: the bytes are not UTF-8, the YAML does not parse or the policy is invalid.
    """
    from engine.spec.yamlpos import load_yaml

    data, pos = load_yaml(text, filename)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([SpecIssue("a trust policy is a mapping (key: value)", file=filename, line=1)])
    try:
        return TrustPolicy.model_validate({**data, "source": filename})
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            issues.append(pos.issue(loc, err["msg"], key=err["type"] == "extra_forbidden"))
        raise SpecError(issues) from None


POLICY_ENV = "CICD_TRUST_POLICY"


def default_policy_path(environ: dict[str, str] | None = None) -> Path:
    """The policy in force when `--policy` is not given: `$CICD_TRUST_POLICY`, else the user's
    `$XDG_CONFIG_HOME/cicd-mcp/trust_policy.yaml` (`~/.config/...`), else the one shipped with the package.

    Never a trust_policy.yaml of the working directory: a server started inside someone's repository
    must not adopt the policy that repository ships.
    """
    env = os.environ if environ is None else environ
    named = env.get(POLICY_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    config_home = Path(env.get("XDG_CONFIG_HOME", "").strip() or Path.home() / ".config")
    user = config_home / "cicd-mcp" / "trust_policy.yaml"
    if user.is_file():
        return user
    shipped = Path(__file__).with_name("default_trust_policy.yaml")
    if shipped.is_file():
        return shipped
    return Path(__file__).resolve().parent.parent / "trust_policy.yaml"


def load_policy(path: str | os.PathLike[str]) -> TrustPolicy:
    """Read trust_policy.yaml. There is no fallback: a missing or invalid file is an error.

    Raises:
        SpecError: the file cannot be read, is not UTF-8, or is invalid.
    """
    p = Path(path)
    try:
        # Bytes, not text: load_yaml decodes them and reports bad UTF-8 as a SpecError naming the file,
        # where read_text would raise a UnicodeDecodeError the server's start-up does not expect.
        text = p.read_bytes()
    except OSError as exc:
        problem = SpecIssue(f"cannot read the trust policy: {exc.strerror or exc}", file=str(p))
        raise SpecError([problem]) from exc
    return parse_policy(text, str(p))
