"""The pure parts of the HTTP edge and the gate's scope rule: tables of cases."""

from __future__ import annotations

import pytest

from server._http import HostCheck
from server._limits import Usage
from server.trust import Allow, Caller, Deny, Level, ToolFacts, decide, parse_policy


@pytest.mark.parametrize(("bind", "host", "accepted"), [
    ("127.0.0.1", "127.0.0.1:8000", True),
    ("127.0.0.1", "localhost:8000", True),
    ("127.0.0.1", "[::1]:8000", True),
    ("127.0.0.1", "evil.example:8000", False),
    ("127.0.0.1", "127.0.0.2:8000", False),
    ("127.0.0.2", "127.0.0.2:8000", True),
    ("127.0.0.2", "localhost", True),
    ("127.0.0.2", "evil.example", False),
    ("0:0:0:0:0:0:0:1", "[::1]:8000", True),
    ("0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]:8000", True),
    ("0:0:0:0:0:0:0:1", "evil.example:8000", False),
    ("::1", "[::ffff:127.0.0.1]:8000", True),
    ("0.0.0.0", "192.0.2.7:8000", True),   # by IP: not a rebinding
    ("0.0.0.0", "evil.example", False),
    ("192.0.2.7", "192.0.2.8", False),
    ("ci.example", "ci.example:443", True),
    ("ci.example", "CI.EXAMPLE", True),
    ("127.0.0.1", "", False),
])
def test_host_allow_list(bind: str, host: str, accepted: bool) -> None:
    assert HostCheck.for_bind(bind, []).accepts(host) is accepted


def test_configured_names_and_origins() -> None:
    check = HostCheck.for_bind("127.0.0.1", ["mcp.internal", "10.0.0.5"])
    assert check.accepts("mcp.internal:8000") and check.accepts("10.0.0.5")
    assert check.origin_accepted("http://mcp.internal:8000") and check.origin_accepted("https://localhost")
    for origin in ("null", "http://evil.example", "file://", "chrome-extension://abc", "http://127.0.0.2:1"):
        assert not check.origin_accepted(origin), origin


def test_usage_counts_per_caller_and_kind() -> None:
    policy = parse_policy("version: 1\nlimits: {untrusted: {sessions: 2, streams: 1, calls: 3, "
                          "expensive_calls: 1}}\n", "p.yaml")
    usage = Usage()
    assert usage.take(policy, "anonymous", Level.UNTRUSTED, "expensive_calls") is None
    refusal = usage.take(policy, "anonymous", Level.UNTRUSTED, "expensive_calls")
    assert refusal is not None and "too many" in refusal and "1 of 1" in refusal
    assert usage.take(policy, "token:a", Level.UNTRUSTED, "expensive_calls") is None   # its own allowance
    assert usage.take(policy, "x", Level.TRUSTED, "expensive_calls") is None            # defaults kept
    usage.give("anonymous", "expensive_calls")
    assert usage.held("anonymous", "expensive_calls") == 0
    assert usage.take(policy, "anonymous", Level.UNTRUSTED, "expensive_calls") is None


POLICY = parse_policy("version: 1\nconfirm: {environments: [production]}\n", "p.yaml")
STAGER = Caller("token:stager", Level.TRUSTED, "http", can_elicit=True, environments=frozenset({"staging"}),
                tools=frozenset({"deploy", "run_pipeline", "get_run"}))


@pytest.mark.parametrize(("facts", "allowed", "says"), [
    (ToolFacts("deploy", Level.TRUSTED, False, True, environments=frozenset({"staging"})), True, ""),
    (ToolFacts("deploy", Level.TRUSTED, False, True, environments=frozenset({"production"})), False,
     "may change only the environments staging"),
    (ToolFacts("run_pipeline", Level.TRUSTED, False, True, environments=frozenset({"staging", "dev"})), False,
     "would change dev"),
    (ToolFacts("run_pipeline", Level.TRUSTED, False, True), True, ""),   # changes no environment
    (ToolFacts("get_run", Level.UNTRUSTED, True, False), True, ""),
    (ToolFacts("cancel_run", Level.TRUSTED, False, True), False, "limited to the tools"),
])
def test_scoped_caller(facts: ToolFacts, allowed: bool, says: str) -> None:
    decision = decide(POLICY, STAGER, facts)
    assert isinstance(decision, Allow if allowed else Deny), decision
    assert says in getattr(decision, "reason", "")


def test_every_protected_target_needs_confirmation() -> None:
    caller = Caller("stdio", Level.TRUSTED, "stdio", can_elicit=False)
    facts = ToolFacts("run_pipeline", Level.TRUSTED, False, True, environments=frozenset({"dev", "production"}))
    decision = decide(POLICY, caller, facts)
    assert isinstance(decision, Deny) and "'production'" in decision.reason and "human confirmation" in decision.reason


@pytest.mark.parametrize("given", [
    "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF",
    "01234567-89ab-cdef-0123-456789abcdef", "{01234567-89ab-cdef-0123-456789abcdef}",
    "urn:uuid:01234567-89ab-cdef-0123-456789abcdef",
])
def test_every_spelling_of_an_sse_session_id_is_one_session(given: str) -> None:
    from urllib.parse import quote

    from server._http import _query_session

    scope = {"query_string": f"session_id={quote(given)}".encode()}
    assert _query_session(scope) == "0123456789abcdef0123456789abcdef"
