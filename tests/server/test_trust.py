"""The pure trust decision and the policy loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import SpecError
from server.trust import (
    Allow,
    Caller,
    Confirm,
    Deny,
    Level,
    ToolFacts,
    TrustPolicy,
    decide,
    hash_token,
    load_policy,
    parse_policy,
)
from tests.server.conftest import REPO

READ = ToolFacts("get_run", Level.UNTRUSTED, read_only=True, destructive=False)
PLAN = ToolFacts("create_rollback_plan", Level.VERIFIED, read_only=False, destructive=False)
DEPLOY = ToolFacts("deploy", Level.TRUSTED, read_only=False, destructive=True)
DEPLOY_PROD = ToolFacts("deploy", Level.TRUSTED, read_only=False, destructive=True, environment="production")
DEPLOY_STAGING = ToolFacts("deploy", Level.TRUSTED, read_only=False, destructive=True, environment="staging")
UNKNOWN = ToolFacts("mystery", None, read_only=False, destructive=True)


def caller(level: Level, *, transport: str = "stdio", can_elicit: bool = True, refused: str | None = None) -> Caller:
    return Caller("c", level, transport, can_elicit, refused)


POLICY = TrustPolicy(confirm={"environments": ["production"]})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("level", "tool", "expected"),
    [
        (Level.UNTRUSTED, READ, Allow),
        (Level.UNTRUSTED, PLAN, Deny),
        (Level.VERIFIED, PLAN, Allow),
        (Level.VERIFIED, DEPLOY, Deny),
        (Level.TRUSTED, DEPLOY, Allow),
        (Level.TRUSTED, DEPLOY_STAGING, Allow),
        (Level.TRUSTED, DEPLOY_PROD, Confirm),
        (Level.VERIFIED, DEPLOY_PROD, Deny),
        (Level.VERIFIED, UNKNOWN, Deny),
        (Level.TRUSTED, UNKNOWN, Allow),
    ],
)
def test_levels_and_confirmation(level: Level, tool: ToolFacts, expected: type) -> None:
    assert isinstance(decide(POLICY, caller(level), tool), expected)


def test_refusal_says_level_needed_and_how_to_get_it() -> None:
    d = decide(POLICY, caller(Level.UNTRUSTED, transport="http"), DEPLOY)
    assert isinstance(d, Deny)
    assert "needs trust level trusted" in d.reason and "has untrusted" in d.reason
    assert "Authorization: Bearer" in d.reason and "token create --level trusted" in d.reason
    d = decide(POLICY, caller(Level.VERIFIED, transport="stdio"), DEPLOY)
    assert isinstance(d, Deny) and "--trust-level trusted" in d.reason


def test_policy_level_overrides_tool_default() -> None:
    policy = TrustPolicy(tools={"get_run": Level.TRUSTED})
    assert isinstance(decide(policy, caller(Level.VERIFIED), READ), Deny)
    policy = TrustPolicy(tools={"deploy": Level.VERIFIED})
    assert isinstance(decide(policy, caller(Level.VERIFIED), DEPLOY), Allow)


def test_read_only_refuses_everything_that_changes_things() -> None:
    policy = TrustPolicy(read_only=True)
    assert isinstance(decide(policy, caller(Level.TRUSTED), READ), Allow)
    for tool in (PLAN, DEPLOY, UNKNOWN):
        d = decide(policy, caller(Level.TRUSTED), tool)
        assert isinstance(d, Deny) and "read-only" in d.reason


def test_unknown_environment_is_treated_as_protected() -> None:
    from server.trust import UNKNOWN_ENVIRONMENT

    unknown = ToolFacts("deploy", Level.TRUSTED, read_only=False, destructive=True, environment=UNKNOWN_ENVIRONMENT)
    assert isinstance(decide(POLICY, caller(Level.TRUSTED), unknown), Confirm)
    assert isinstance(decide(TrustPolicy(), caller(Level.TRUSTED), unknown), Allow)   # nothing is protected


def test_client_without_elicitation_is_refused_not_assumed_to_agree() -> None:
    d = decide(POLICY, caller(Level.TRUSTED, can_elicit=False), DEPLOY_PROD)
    assert isinstance(d, Deny) and "confirmation" in d.reason and "elicitation" in d.reason


def test_refused_credential_is_denied_even_for_read_only_tools() -> None:
    d = decide(POLICY, caller(Level.UNTRUSTED, refused="token revoked"), READ)
    assert d == Deny("token revoked")


def test_shipped_policy_is_valid_and_strict() -> None:
    policy = load_policy(REPO / "trust_policy.yaml")
    assert policy.tools["run_pipeline"] == Level.TRUSTED
    assert policy.tools["create_rollback_plan"] == Level.VERIFIED
    assert policy.tools["pipeline_health"] == Level.UNTRUSTED
    assert policy.default_level == Level.TRUSTED
    assert "production" in policy.confirm.environments


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 1\nread_only: maybe\n", 2, "read_only"),
        ("version: 1\ntools:\n  deploy: superuser\n", 3, "tools.deploy"),
        ("version: 1\nstdio:\n  level: trusted\n  lvl: x\n", 4, "stdio.lvl"),
        ("version: 1\nhttp:\n  tokens:\n    - {name: a, level: trusted, sha256: abc}\n", 4, "sha256"),
        ("version: 1\nhttp:\n  tokens:\n    - {name: a, level: trusted}\n", 4, "exactly one"),
        ("version: 2\n", 1, "version"),
        ("version: 1\nread_only: false\nread_only: true\n", 3, "duplicate"),
    ],
)
def test_invalid_policy_names_file_line_and_field(text: str, line: int, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_policy(text, "p.yaml")
    message = str(info.value)
    assert f"p.yaml:{line}" in message, message
    assert fragment in message, message


def test_missing_policy_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the trust policy"):
        load_policy(tmp_path / "nope.yaml")


def test_env_tokens_are_read_at_start_and_must_be_set() -> None:
    policy = parse_policy(
        "version: 1\nhttp:\n  tokens:\n    - {name: ops, level: trusted, env: OPS_TOKEN}\n"
        f"    - {{name: ci, level: verified, sha256: {hash_token('ci-secret')}}}\n", "p.yaml")
    hashes = policy.env_token_hashes({"OPS_TOKEN": "ops-secret"})
    assert hashes[hash_token("ops-secret")].name == "ops"
    assert hashes[hash_token("ci-secret")].level == Level.VERIFIED
    with pytest.raises(SpecError, match="OPS_TOKEN"):
        policy.env_token_hashes({})


def test_policy_naming_an_unknown_tool_stops_the_server(tmp_path: Path) -> None:
    from engine.settings import get_settings
    from server.app import build_server

    policy = parse_policy("version: 1\ntools:\n  run_pipline: trusted\n", "p.yaml")
    with pytest.raises(SpecError, match="no tool named 'run_pipline'") as info:
        build_server(policy, settings=get_settings(PIPELINE_WORKSPACE=tmp_path))
    assert "tools.run_pipline" in str(info.value)
