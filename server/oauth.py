"""OAuth 2.1 resource-server mode for HTTP/SSE, beside the static bearer tokens.

With `http.oauth` in the policy, a bearer token that is a JWT is checked here instead of against
the token table: signed by a key of the issuer's JWKS, `iss` the configured issuer, `aud` this
server (the resource), not expired; its scopes map to a trust level (the highest mapped scope
wins; a token with none of them is refused). The caller is named `oauth:<sub>` in the audit log,
and its sessions are bound to that subject.

The server describes itself as RFC 9728 protected-resource metadata at
`/.well-known/oauth-protected-resource` (and the path-suffixed form for `/mcp` and `/sse`), and
every 401 points there (`WWW-Authenticate: Bearer resource_metadata="..."`), so a client can find
the authorization server and ask it for a token for this resource.

Verification is synchronous (PyJWT); the JWKS is fetched on first use and refreshed on an unknown
key id, and verified tokens are cached until they expire, so the HTTP edge (which verifies first,
in a worker thread) leaves the gate a cache hit.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from server.tokens import Grant
from server.trust import Level, OAuthSettings

__all__ = ["METADATA_PATH", "OAuthVerifier", "looks_like_jwt"]

METADATA_PATH = "/.well-known/oauth-protected-resource"
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2])


class OAuthVerifier:
    def __init__(self, settings: OAuthSettings) -> None:
        import jwt  # loaded only by a server that accepts OAuth tokens

        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_uri, cache_jwk_set=True, lifespan=300, timeout=10)
        self._cache: dict[str, tuple[float, Grant | str]] = {}
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 protected-resource metadata."""
        return {
            "resource": self.settings.resource,
            "authorization_servers": [self.settings.issuer],
            "scopes_supported": sorted(self.settings.scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": "cicd-mcp",
        }

    def cached(self, token: str) -> Grant | str | None:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or hit[0] <= time.time():
            return None
        return hit[1]

    def verify(self, token: str) -> Grant | str:
        """What the JWT grants, or why it is refused. May fetch the JWKS (blocking)."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        result, until = self._verify(token)
        with self._lock:
            if len(self._cache) > 10_000:
                now = time.time()
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (until, result)
        return result

    def _verify(self, token: str) -> tuple[Grant | str, float]:
        import jwt

        s = self.settings
        negative = time.time() + 30   # a refusal is remembered briefly: a flood of one bad token stays cheap
        try:
            signing = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, signing.key, algorithms=_ALGORITHMS, audience=s.resource, issuer=s.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]}, leeway=30)
        except jwt.ExpiredSignatureError:
            return "the OAuth access token has expired; get a new one from the authorization server", negative
        except jwt.InvalidAudienceError:
            return (f"the OAuth access token is not for this server (its audience is not {s.resource}); ask the "
                    "authorization server for a token for this resource"), negative
        except jwt.InvalidIssuerError:
            return f"the OAuth access token was not issued by {s.issuer}", negative
        except jwt.PyJWKClientError as exc:
            return f"the OAuth access token's signing key is not in the issuer's JWKS ({exc})", negative
        except jwt.InvalidTokenError as exc:
            return f"the OAuth access token is invalid ({exc})", negative
        raw = claims.get("scope", claims.get("scp", ""))
        scopes = raw.split() if isinstance(raw, str) else [str(x) for x in raw] if isinstance(raw, list) else []
        levels = [s.scopes[x] for x in scopes if x in s.scopes]
        if not levels:
            return (f"the OAuth access token carries none of the scopes this server maps to a trust level "
                    f"({', '.join(sorted(s.scopes))})"), negative
        level = max(levels, key=lambda lv: Level(lv).rank)
        return Grant(f"oauth:{claims['sub']}", Level(level)), float(claims["exp"])
