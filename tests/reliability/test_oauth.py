"""OAuth 2.1 resource-server mode against a local authorization server the test starts.

The issuer is a loopback HTTP server publishing a JWKS; tokens are signed with its RSA key (and,
for the attacks, with a key it does not publish). The MCP server runs as a subprocess on
streamable HTTP with `http.oauth` in its policy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.store import open_store
from tests.reliability.conftest import free_port, policy_text, serving_http, text
from tests.reliability.test_attacks import INITIALIZE, client_over, marker_pipeline, raw_headers

pytestmark = pytest.mark.anyio


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey   # a key the issuer does not publish

    def mint(self, audience: str, *, sub: str = "alice", scope: str = "cicd:admin", issuer: str | None = None,
             expires_in: float = 300, key: rsa.RSAPrivateKey | None = None, kid: str = "k1") -> str:
        now = int(time.time())
        claims = {"iss": issuer or self.url, "sub": sub, "aud": audience, "iat": now, "exp": now + int(expires_in),
                  "scope": scope}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body, status = (jwks, 200) if self.path == "/jwks" else (b"{}", 404)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Issuer(f"http://127.0.0.1:{httpd.server_address[1]}", key,
                     rsa.generate_private_key(public_exponent=65537, key_size=2048))
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_jwt_access_tokens_from_the_configured_issuer(issuer: Issuer, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(http=(
        f"{{anonymous_level: untrusted, tokens: [], oauth: {{issuer: '{issuer.url}', "
        f"jwks_uri: '{issuer.url}/jwks', resource: '{resource}'}}}}")))
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "p", marker)
    refused: dict[str, httpx.Response] = {}
    with serving_http(ws, policy, port):
        async with httpx.AsyncClient(timeout=20) as raw:
            meta = await raw.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")
            bad = {
                "expired": issuer.mint(resource, expires_in=-120),
                "other audience": issuer.mint("http://127.0.0.1:1/mcp"),
                "other issuer": issuer.mint(resource, issuer="http://127.0.0.1:2"),
                "unpublished key": issuer.mint(resource, key=issuer.stranger),
                "unknown kid": issuer.mint(resource, kid="k9"),
                "no mapped scope": issuer.mint(resource, scope="email profile"),
            }
            for what, token in bad.items():
                refused[what] = await raw.post(resource, json=INITIALIZE,
                                               headers=raw_headers(authorization=f"Bearer {token}"))
        async with client_over(resource, "http", issuer.mint(resource, sub="bob", scope="cicd:read"), {}) as client:
            reader = await client.call_tool("run_pipeline", {"config_path": str(pipe)})
            health = await client.call_tool("pipeline_health", {})
        seen: dict[str, str] = {}
        async with client_over(resource, "http", issuer.mint(resource), seen) as client:
            admin = await client.call_tool("run_pipeline", {"config_path": str(pipe)})
            async with httpx.AsyncClient(timeout=20) as raw:
                hijack = await raw.post(resource, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                                        headers=raw_headers(seen, authorization="Bearer "
                                                            + issuer.mint(resource, sub="mallory")))
    assert meta.status_code == 200, meta.text
    assert meta.json()["resource"] == resource and meta.json()["authorization_servers"] == [issuer.url]
    for what, response in refused.items():
        assert response.status_code == 401, (what, response.text)
        assert f'resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"' in (
            response.headers["www-authenticate"]), what
    assert "expired" in refused["expired"].text and "not for this server" in refused["other audience"].text
    assert reader.is_error and "needs trust level trusted" in text(reader) and not health.is_error
    assert not admin.is_error and marker.exists(), text(admin)
    assert hijack.status_code == 404
    with open_store(ws) as store:
        rows = [(r["caller"], r["decision"]) for r in store.query("SELECT caller, decision FROM audit ORDER BY id")]
    assert rows.count(("invalid-token", "denied")) == len(bad)
    for row in (("oauth:bob", "denied"), ("oauth:alice", "allowed"), ("oauth:mallory", "denied")):
        assert row in rows, rows


def test_an_oauth_server_may_listen_beyond_loopback(make_server: Any, issuer: Issuer) -> None:
    from engine.errors import InputError
    from server.serve import check_bind

    plain = make_server(policy_text())
    with pytest.raises(InputError, match="no bearer token"):
        check_bind(plain, "192.0.2.1")
    oauth = make_server(policy_text(http=(
        f"{{anonymous_level: untrusted, oauth: {{issuer: '{issuer.url}', jwks_uri: '{issuer.url}/jwks', "
        "resource: 'https://ci.example/mcp'}}")))
    check_bind(oauth, "192.0.2.1")


def test_oauth_urls_must_be_https_off_loopback() -> None:
    from engine.errors import SpecError
    from server.trust import parse_policy

    with pytest.raises(SpecError, match="https"):
        parse_policy("version: 1\nhttp: {oauth: {issuer: 'http://auth.example', jwks_uri: 'https://auth.example/j', "
                     "resource: 'https://ci.example/mcp'}}\n", "p.yaml")
