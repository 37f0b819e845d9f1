"""Secrets: which names hold one, the one parser of secrets files, and masking.

A secret value is replaced by `***` before a byte of it reaches a log, a stored record or a
tool result. Values come from a pipeline's declared `secrets:`, the secrets file
(`PIPELINE_SECRETS_FILE`), and any variable whose name looks like a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["MASK", "SECRET_NAME", "Masker", "read_secrets_file", "secret_looking"]

MASK = "***"
# A variable named like these holds a credential: its value is masked like a declared secret.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.IGNORECASE)
# Values shorter than this are not masked: masking "1" or "on" would garble every line and hide
# nothing worth hiding.
MIN_SECRET_LENGTH = 4


def secret_looking(variables: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """The values of `variables` whose names match SECRET_NAME (DEPLOY_TOKEN, DB_PASSWORD, API_KEY, ...)."""
    items = variables.items() if isinstance(variables, Mapping) else variables
    return [value for name, value in items if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH]


def read_secrets_file(path: Path | None) -> dict[str, str]:
    """`KEY=VALUE` lines of a secrets file (dotenv style): blank lines and `#` comments skipped,
    an `export ` prefix dropped, one pair of matching quotes around the value removed.
    A missing or unreadable file gives no secrets."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key:
            out[key] = value
    return out


class Masker:
    """Replaces every secret value (and each line of a multi-line one) with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for s in secrets:
            if not s:
                continue
            values.add(s)
            values.update(line for line in s.splitlines() if line.strip())
        # Longest first, so a secret containing another is masked whole.
        self._str = sorted(values, key=len, reverse=True)
        self._bytes = [v.encode() for v in self._str]
        self.longest = max((len(b) for b in self._bytes), default=0)

    def __bool__(self) -> bool:
        return bool(self._str)

    def mask(self, text: str) -> str:
        for value in self._str:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        for value in self._bytes:
            if value in data:
                data = data.replace(value, MASK.encode())
        return data

    def mask_obj(self, obj: object) -> object:
        """Mask every string inside a JSON-like structure."""
        if not self:
            return obj
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, dict):
            return {self.mask_obj(k): self.mask_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.mask_obj(v) for v in obj]
        return obj
