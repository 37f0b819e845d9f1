"""`cicd-mcp`: the engine's commands (run, runs, show, logs, cancel, report, export) and the
server's (serve, audit, token create/list/revoke, manifests). `main()` is the installed
`cicd-mcp` and `python -m server`; with no command it prints the usage (`serve` starts the server).

The parser is the engine's (`engine.cli.build_parser`) with the server's commands added
(`add_commands`, which adds them once whoever calls it first). Each server command is
`cmd_<name>(args) -> int` and imports the MCP SDK only when it needs it: `cicd-mcp run`
never loads it. A server command is parsed without the engine's commands: building those
loads the insights and interop packages (about 0.2 s), which every MCP client's start of
`cicd-mcp serve` would pay for (bench/mcp.py, cold start).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import cli as engine_cli
from engine.errors import CicdError
from server._transports import TRANSPORTS

__all__ = ["add_commands", "build_parser", "main"]

_SERVER_COMMANDS = ("serve", "audit", "token", "manifests")
_MANIFESTS = "tool_manifests"


def _common(p: argparse.ArgumentParser, *, policy: bool = True) -> None:
    # SUPPRESS: when mounted under `cicd-mcp`, whose own --workspace comes first, an absent
    # option here must not overwrite it with None.
    p.add_argument("--workspace", default=argparse.SUPPRESS,
                   help="engine workspace (default: $PIPELINE_WORKSPACE)")
    if policy:
        p.add_argument("--policy", help="trust policy file (default: $CICD_TRUST_POLICY, else "
                       "~/.config/cicd-mcp/trust_policy.yaml, else the shipped one; never the working directory's)")


def _settings(args: argparse.Namespace) -> Any:
    from engine.settings import get_settings

    return get_settings(PIPELINE_WORKSPACE=getattr(args, "workspace", None))


def _policy(args: argparse.Namespace) -> Any:
    from engine.errors import InputError
    from server.trust import default_policy_path, load_policy

    given = getattr(args, "policy", None)
    if given and not Path(given).is_absolute() and not Path(given).exists():
        # An MCP client starts the server in a directory of its own choosing, rarely the checkout.
        raise InputError(
            f"cannot read the trust policy {given}: there is no such file in {Path.cwd()}, the directory this "
            f"server was started in. Give an absolute path (e.g. --policy \"$PWD/{given}\" when you register "
            "the server with a client), or leave --policy out to use the policy packaged with cicd-mcp."
        )
    return load_policy(given or default_policy_path())


def _store(args: argparse.Namespace) -> Any:
    from engine.store import open_store

    return open_store(_settings(args).workspace)


# -- serve ----------------------------------------------------------------------------------------


_URL_PATHS = {"http": "/mcp", "sse": "/sse"}
_TRANSPORT_NAMES = {"http": "streamable HTTP", "sse": "SSE"}


def _policy_name(source: str) -> str:
    if source.startswith("<"):
        return source
    path = Path(source).resolve()
    packaged = " (the policy packaged with cicd-mcp)" if path.name == "default_trust_policy.yaml" else ""
    return f"{path}{packaged}"


def _announce(server: Any, transport: str, host: str, port: int) -> None:
    """Tell the person who started the server, on stderr, where it listens and who may do what."""
    policy = server.state.policy
    where = f"trust policy {_policy_name(policy.source)}"
    if policy.read_only:
        where += " (read-only: every tool that changes something is refused)"
    if transport == "stdio":
        print(f"cicd-mcp: serving MCP on stdio (an MCP client starts this command and speaks on its "
              f"stdin/stdout; Ctrl-C stops it); {where}; the stdio client is {server.state.stdio_level.value}",
              file=sys.stderr)
        return
    tokens = len(policy.http.tokens) + len([t for t in server.state.tokens.list() if t.revoked_at is None])
    shown = f"[{host}]" if ":" in host else host
    print(f"cicd-mcp: serving MCP over {_TRANSPORT_NAMES[transport]} at http://{shown}:{port}{_URL_PATHS[transport]} "
          f"(Ctrl-C stops it)", file=sys.stderr)
    print(f"cicd-mcp: {where}; callers without a bearer token are {policy.http.anonymous_level.value}; "
          f"{tokens} token(s) known (`cicd-mcp token create --level LEVEL` makes one)", file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import build_server
    from server.serve import check_bind, run
    from server.trust import Level

    transport = args.transport
    trust_level = Level(args.trust_level) if args.trust_level else None
    server = build_server(_policy(args), settings=_settings(args), transport=transport, trust_level=trust_level)
    if transport != "stdio":
        check_bind(server, args.host)  # refused before it is announced
    _announce(server, transport, args.host, args.port)
    run(server, transport, host=args.host, port=args.port)
    return 0


# -- audit ----------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from server.audit import AuditLog

    if args.action == "verify":
        return _audit_verify(args)

    since = time.time() - args.since_hours * 3600 if args.since_hours else None
    records = AuditLog(_store(args)).recent(args.limit, tool=args.tool, since=since)
    if args.json:
        for r in records:
            print(json.dumps(r.__dict__, sort_keys=True))
        return 0
    if not records:
        print("no audit records")
        return 0
    print(f"{'time (UTC)':19}  {'caller':16} {'level':9} {'tool':22} {'decision':22} {'outcome':9} {'ms':>8}  args")
    for r in records:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.ts))
        print(f"{ts:19}  {r.caller[:16]:16} {r.level:9} {r.tool[:22]:22} {r.decision:22} {r.outcome or '-':9} "
              f"{r.duration_ms:8.1f}  {r.args_sha256[:12]}")
        if r.reason and r.decision != "allowed":
            print(f"{'':21}reason: {r.reason}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from server.audit import verify_against_table

    path = Path(args.file) if args.file else _settings(args).workspace / "audit.jsonl"
    try:
        report = verify_against_table(_store(args), path)
    except OSError as exc:
        print(f"cicd-mcp: cannot read the audit file {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if report.problem is not None:
        print(f"{path}:{report.line}: {report.problem} ({report.records} records verified before it)")
        return 1
    print(f"{path}: {report.records} records, hash chain intact and matching the audit table")
    return 0


# -- tokens ---------------------------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    from server.tokens import TokenStore, parse_lifetime
    from server.trust import Level

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]

    token, info = TokenStore(_store(args)).create(
        Level(args.level), args.name, lifetime=parse_lifetime(args.expires_in),
        environments=names(args.environments), tools=names(args.tools),
    )
    print(token)
    print(f"token {info.name!r} ({info.level}) created, {info.state()}; it is shown only this once, store it "
          f"now. Clients send it as 'Authorization: Bearer <token>'.", file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from server.tokens import TokenStore, policy_token_infos

    infos = TokenStore(_store(args)).list()
    try:
        infos += policy_token_infos(_policy(args))
    except CicdError as exc:
        print(f"(policy tokens not shown: {exc})", file=sys.stderr)
    if not infos:
        print("no tokens")
        return 0
    for t in infos:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.created_at)) if t.created_at else "-"
        scope = f" ({t.scope()})" if t.scope() else ""
        print(f"{t.name:24} {t.level:9} {t.source:6} created {created:16} {t.state()}{scope}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from server.tokens import TokenStore

    TokenStore(_store(args)).revoke(args.name)
    print(f"token {args.name!r} revoked; it is refused from its next call")
    return 0


# -- manifests ------------------------------------------------------------------------------------


def cmd_manifests(args: argparse.Namespace) -> int:
    from engine.errors import InputError
    from engine.store import SQLiteStore
    from server.app import build_server
    from server.manifests import check_manifests, write_manifests

    if args.out is None:
        # The manifests belong to the checkout: run elsewhere, the command would leave a stray
        # ./tool_manifests/ where nobody looks for it.
        if not Path(_MANIFESTS).is_dir():
            raise InputError(f"there is no ./{_MANIFESTS}/ in {Path.cwd()}: run `cicd-mcp manifests` at the root "
                             "of the cicd-mcp repository, or name a directory with --out DIR")
        args.out = _MANIFESTS
    server = build_server(_policy(args), settings=_settings(args), store=SQLiteStore(":memory:"))
    out = Path(args.out)
    if args.check:
        problems = check_manifests(server, out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `cicd-mcp manifests` to regenerate", file=sys.stderr)
        return 1 if problems else 0
    for path in write_manifests(server, out):
        print(path)
    return 0


# -- wiring ---------------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add serve, audit, token and manifests to an argparse subparsers object (each sets `func`);
    a second call on the same object adds nothing."""
    if "serve" in sub.choices:
        return
    p = sub.add_parser(
        "serve", help="run the MCP server (stdio by default)",
        description="Serve the engine's tools, resources and prompts to MCP clients, every tool call through the "
        "trust gate. On stdio an MCP client starts this command itself; over HTTP or SSE it listens until "
        "stopped. It names on stderr where it listens, the trust policy in force and the level of callers.")
    _common(p)
    p.add_argument("--transport", choices=TRANSPORTS, default="stdio",
                   help="stdio (default: for a client that starts the server), http (streamable HTTP at "
                   "/mcp) or sse (at /sse)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP/SSE address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP/SSE port (default 8000)")
    p.add_argument("--trust-level", choices=("untrusted", "verified", "trusted"),
                   help="level of the stdio client (overrides stdio.level of the policy)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("audit", help="print the trust gate's audit log; `audit verify` checks its hash chain")
    _common(p, policy=False)
    p.add_argument("action", nargs="?", choices=("verify",),
                   help="verify: check audit.jsonl's hash chain and that the audit table matches it")
    p.add_argument("--file", help="with verify: the JSONL file (default: <workspace>/audit.jsonl)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--tool")
    p.add_argument("--since-hours", type=float)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("token", help="bearer tokens for HTTP/SSE callers")
    tsub = p.add_subparsers(dest="token_command", required=True)
    c = tsub.add_parser("create", help="make a token (printed once; only its hash is stored)")
    _common(c, policy=False)
    c.add_argument("--level", required=True, choices=("untrusted", "verified", "trusted"))
    c.add_argument("--name")
    c.add_argument("--expires-in", default="90d", metavar="DURATION",
                   help="lifetime: a number and s, m, h, d or w (default 90d), or 'never'")
    c.add_argument("--environments", metavar="NAMES",
                   help="comma-separated: the only environments its calls may change (default: any)")
    c.add_argument("--tools", metavar="NAMES", help="comma-separated: the only tools it may call (default: any)")
    c.set_defaults(func=cmd_token_create)
    c = tsub.add_parser("list", help="list tokens (never their values)")
    _common(c)
    c.set_defaults(func=cmd_token_list)
    c = tsub.add_parser("revoke", help="revoke a token; refused from its next call")
    _common(c, policy=False)
    c.add_argument("name")
    c.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("manifests", help="write tool_manifests/ from the registered tools")
    _common(p)
    p.add_argument("--out", metavar="DIR", help="where to write (default: ./tool_manifests/ of the checkout; "
                   "refused when there is none)")
    p.add_argument("--check", action="store_true", help="exit 1 when the manifests are out of date")
    p.set_defaults(func=cmd_manifests)


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    # argparse has no public accessor for a parser's subparsers object: find its action.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError("the engine's parser has no subcommands")


def build_parser() -> argparse.ArgumentParser:
    """The engine's parser with the server's commands."""
    parser = engine_cli.build_parser()
    add_commands(_subcommands(parser))
    return parser


def _server_parser() -> argparse.ArgumentParser:
    """The server's commands under the engine's top-level options (see the module docstring)."""
    parser = engine_cli.new_parser()
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The first argument after the top-level options (`--workspace DIR`), or None."""
    rest = list(argv)
    while rest and (rest[0] == "--workspace" or rest[0].startswith("--workspace=")):
        rest = rest[2:] if rest[0] == "--workspace" else rest[1:]
    return rest[0] if rest else None


run_command = engine_cli.run_command


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(argv)
    if command is None:
        # A person who types `cicd-mcp` gets the commands, not a stdio server silently waiting for
        # JSON-RPC on their terminal; MCP clients start `cicd-mcp serve`.
        build_parser().print_help(sys.stderr)
        return 2
    parser = _server_parser() if command in _SERVER_COMMANDS else build_parser()
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
