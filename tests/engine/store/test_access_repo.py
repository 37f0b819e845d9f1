"""The access repository (tokens, audit) on each dialect."""

from __future__ import annotations

import pytest

from engine.errors import ConflictError
from engine.store import Store, access


def _audit(ts: float, tool: str, decision: str = "allowed", caller: str = "stdio") -> access.AuditRecord:
    return access.AuditRecord(ts, "stdio", caller, "trusted", tool, "0" * 64, decision, None, "ok", 1.25)


def test_tokens_are_found_by_hash_and_a_second_of_a_name_or_hash_conflicts(store: Store) -> None:
    access.add_token(store, "ci", "h1", "verified", 1.0, None)
    access.add_token(store, "bot", "h2", "trusted", 2.0, 99.0)
    with pytest.raises(ConflictError):
        access.add_token(store, "ci", "h3", "verified", 3.0, None)
    with pytest.raises(ConflictError):
        access.add_token(store, "other", "h1", "verified", 3.0, None)
    assert [t.name for t in access.tokens(store)] == ["ci", "bot"]
    bot = access.token_by_hash(store, "h2")
    assert bot == access.TokenRecord("bot", "trusted", 2.0, None, 99.0)
    assert access.token_named(store, "nobody") is None


def test_a_token_is_revoked_once(store: Store) -> None:
    access.add_token(store, "ci", "h1", "verified", 1.0, None)
    assert access.revoke_token(store, "ci", 5.0) is True
    assert access.revoke_token(store, "ci", 6.0) is False
    token = access.token_named(store, "ci")
    assert token is not None and token.revoked_at == 5.0


def test_audit_records_come_back_oldest_first_filtered_by_tool_and_time(store: Store) -> None:
    for n, tool in enumerate(["run_pipeline", "get_run", "run_pipeline", "deploy"]):
        access.write_audit(store, _audit(10.0 + n, tool))
    assert [r.ts for r in access.recent_audit(store, 2)] == [12.0, 13.0]
    assert [r.ts for r in access.recent_audit(store, tool="run_pipeline")] == [10.0, 12.0]
    assert [r.tool for r in access.recent_audit(store, since=11.5)] == ["run_pipeline", "deploy"]
    assert access.recent_audit(store, 1)[0] == _audit(13.0, "deploy")


def test_an_audit_record_with_a_lone_surrogate_is_kept(store: Store) -> None:
    access.write_audit(store, _audit(1.0, "bad\udcfftool"))
    assert access.recent_audit(store)[0].tool == "bad\\udcfftool"
