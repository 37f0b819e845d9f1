"""Where a config file named by a tool call may come from.

A pipeline or deployment config runs commands on this machine, so a `config_path` from a client
is confined, like the files a filesystem MCP server may touch, to the roots the operator declared:

- the config root: PIPELINE_CONFIG_PATH (a directory, or a file's directory), and
- the workspace (PIPELINE_WORKSPACE), where the server keeps what it generates.

The path is resolved first (symlinks followed, '..' removed), so neither a symlink nor '../'
leads out of a root, and the engine is given the resolved path: what was checked is what is read.
Without PIPELINE_CONFIG_PATH the operator has declared no root and any path the server's user can
read is accepted, as before: setting it is how a shared or networked server is locked down.

A deployment's artifacts that are files or directories of this machine (every artifact of a
local or SSH target; a build context or image tarball for Docker) are read and copied into a
release, so they are confined the same way, with the artifact store (ARTIFACT_STORAGE_PATH,
where pipeline runs keep what they built) as a third root.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError
from engine.settings import Settings

__all__ = ["confined_artifacts", "config_roots", "confined_config_path"]


def config_roots(settings: Settings) -> list[Path] | None:
    """The directories a config_path may lie in, resolved; None when no config root is declared."""
    from engine._confined import config_roots as roots

    return roots(settings)


def confined_config_path(raw: str, settings: Settings, field: str = "config_path") -> str:
    """`raw` resolved, when it lies under a config root (see the module docstring); `raw` as given
    when no root is declared.

    Raises:
        InputError: the path cannot name a file (a NUL byte), or it lies outside every root (the
            roots are named, with how to change them).
    """
    roots = config_roots(settings)
    if roots is None:
        return raw
    try:
        resolved = Path(raw).expanduser().resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop
        raise InputError(f"{field} {raw[:200]!r} is not a usable path: {exc}") from None
    if any(resolved.is_relative_to(root) for root in roots):
        return str(resolved)
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    raise InputError(
        f"{field} {shown!r} is outside the server's config roots ({', '.join(str(r) for r in roots)}): "
        "name a file under one of them (symlinks and '..' are followed before the check), or a known pipeline "
        "by name. The operator sets the config root with PIPELINE_CONFIG_PATH."
    )


def _names_a_local_path(target_kind: str, artifact: str) -> bool:
    if target_kind in ("local", "ssh"):
        return True  # their artifacts are release directories and tarballs
    # Docker and Kubernetes take image references; a path is a build context or an image tarball.
    return artifact.startswith(("/", "./", "../", "~")) or Path(artifact).exists()


def confined_artifacts(artifacts: list[str], target_kind: str, settings: Settings) -> list[str]:
    """The artifacts with every local path resolved and checked against the roots (config roots
    and the artifact store); image references pass unchanged. All pass unchanged when no config
    root is declared.

    Raises:
        InputError: an artifact path lies outside every root (named, with the roots).
    """
    roots = config_roots(settings)
    if roots is None:
        return artifacts
    roots = [*roots, settings.artifact_root]
    out = []
    for n, raw in enumerate(artifacts):
        if not _names_a_local_path(target_kind, raw):
            out.append(raw)
            continue
        try:
            resolved = Path(raw).expanduser().resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"artifacts[{n}] {raw[:200]!r} is not a usable path: {exc}") from None
        if not any(resolved.is_relative_to(root) for root in roots):
            shown = raw if len(raw) <= 200 else raw[:200] + "..."
            raise InputError(
                f"artifacts[{n}] {shown!r} is outside the server's roots ({', '.join(str(r) for r in roots)}): "
                "a deployment may copy only files under them (symlinks and '..' are followed before the check). "
                "The operator sets them with PIPELINE_CONFIG_PATH, PIPELINE_WORKSPACE and ARTIFACT_STORAGE_PATH."
            )
        out.append(str(resolved))
    return out
