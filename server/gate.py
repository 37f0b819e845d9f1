"""The trust gate at the edge: inside `tools/call`, for every tool, listed or not.

`CicdServer.call_tool` is where `MCPServer` dispatches every `tools/call` (the SDK's
`_handle_call_tool` calls it), so the gate wraps it: find the caller (stdio level, or the
request's bearer token read now, so a revoked token fails at its next call), collect the
facts of the tool and the call, `decide()`, and write one audit row whatever happens.

A `Confirm` decision is carried out by the tool's `confirmed` parameter, filled by the SDK's
resolver machinery (`Resolve` → `Elicit`): on 2025-era protocol versions the server sends
`elicitation/create` mid-call, on 2026-07-28 it answers `input_required` and the client
retries with the answer; the gate runs again on the retry. The resolver reads the gate's
decision from a context variable, so a tool cannot skip the question the gate asked for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult, ListToolsResult, PaginatedRequestParams
from pydantic import BaseModel, Field, ValidationError

from engine.errors import InputError, WorldError
from server.audit import AuditRecord, args_digest
from server.oauth import looks_like_jwt
from server.state import AppState
from server.tokens import resolve_token
from server.tools._errors import did_you_mean
from server.tools._registry import ToolSpec
from server.trust import UNKNOWN_ENVIRONMENT, Allow, Caller, Confirm, Decision, Deny, ToolFacts, decide

__all__ = ["CicdServer", "Confirmed", "ConfirmationAnswer", "human_confirmation", "server_of", "state_of"]


@dataclass
class _CallState:
    decision: Decision
    answered: bool | None = None   # None: not asked (or not answered yet); True/False: the human's answer


_CALL: ContextVar[_CallState | None] = ContextVar("cicd_gate_call", default=None)


class ConfirmationAnswer(BaseModel):
    confirm: bool = Field(description="Allow this call?")


class Confirmation(BaseModel):
    """What a tool receives: whether a human was asked, and said yes; and the environments the gate
    decided on (None when it did not resolve them), which the tool hands to the engine so that what
    runs is what was decided on."""

    asked: bool
    environment: str | None = None
    targets: frozenset[str] | None = None


async def _ask(ctx: Context) -> Elicit[ConfirmationAnswer] | ConfirmationAnswer:
    state = _CALL.get()
    if state is None or not isinstance(state.decision, Confirm):
        return ConfirmationAnswer(confirm=True)
    return Elicit(state.decision.question, ConfirmationAnswer)


async def human_confirmation(
    answer: Annotated[ElicitationResult[ConfirmationAnswer], Resolve(_ask)],
) -> Confirmation:
    """The confirmation the gate asked for, or a ToolError when the human did not agree.

    Raises:
        ToolError: declined, cancelled, or accepted without ticking `confirm`.
    """
    state = _CALL.get()
    if state is None or not isinstance(state.decision, Confirm):
        targets = state.decision.targets if state is not None and isinstance(state.decision, Allow) else None
        return Confirmation(asked=False, targets=targets)
    if isinstance(answer, AcceptedElicitation) and answer.data.confirm:
        state.answered = True
        return Confirmation(asked=True, environment=state.decision.environment, targets=state.decision.targets)
    state.answered = False
    how = "did not confirm" if isinstance(answer, AcceptedElicitation) else f"answered {answer.action!r}"
    raise ToolError(
        f"not done: the user {how} the call on environment {state.decision.environment!r}; nothing was changed"
    )


Confirmed = Annotated[Confirmation, Resolve(human_confirmation)]


def _client_can_elicit(context: Context) -> bool:
    try:
        caps = context.client_capabilities
    except ValueError:
        return False
    elicitation = caps.elicitation if caps is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _expensive(arguments: dict[str, Any]) -> bool:
    """A call that runs a caller's regex over logs (in a child process, up to its time bound)."""
    grep = arguments.get("grep")
    return isinstance(grep, str) and bool(grep)


def _combine(first: Decision, second: Decision) -> Decision:
    """Both decisions must allow; a refusal wins, then a question; the targets found by either are kept."""
    for d in (first, second):
        if isinstance(d, Deny):
            return d
    found = [d.targets for d in (first, second) if not isinstance(d, Deny) and d.targets is not None]
    targets = frozenset().union(*found) if found else None
    for d in (first, second):
        if isinstance(d, Confirm):
            return dataclasses.replace(d, targets=targets)
    assert isinstance(first, Allow)
    return dataclasses.replace(first, targets=targets)


class CicdServer(MCPServer[Any]):
    """MCPServer with the trust gate in `call_tool`.

    Its tools are given whole at construction (`tools`, built from `specs` by
    `server.tools._registry.build_tool`) through the SDK's public `tools=` argument; the
    server keeps them by name as well, because the SDK offers no public lookup of a `Tool`.
    """

    def __init__(self, state: AppState, specs: dict[str, ToolSpec], tools: list[Tool], **kwargs: Any) -> None:
        names = [t.name for t in tools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tool(s) registered twice: {', '.join(twice)}")
        super().__init__(tools=tools, **kwargs)
        self.state = state
        self.specs = specs
        self._registered = {t.name: t for t in tools}

    def registered_tool(self, name: str) -> Tool | None:
        """The registered tool `name`, or None."""
        return self._registered.get(name)

    def registered_tools(self) -> list[Tool]:
        return list(self._registered.values())

    # -- who is calling -----------------------------------------------------------------------
    def caller(self, context: Context | None) -> Caller:
        st = self.state
        can_elicit = context is not None and _client_can_elicit(context)
        if st.transport not in ("http", "sse"):
            return Caller("stdio", st.stdio_level, st.transport, can_elicit)
        headers = None
        if context is not None:
            try:
                headers = context.headers
            except ValueError:
                headers = None
        return self.caller_from_headers(headers, can_elicit)

    def caller_from_headers(self, headers: Mapping[str, str] | None, can_elicit: bool = False) -> Caller:
        """The HTTP/SSE caller a request's headers name (its bearer token read now)."""
        st = self.state
        auth = (headers or {}).get("authorization")
        if not auth:
            return Caller("anonymous", st.policy.http.anonymous_level, st.transport, can_elicit)
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Caller("anonymous", st.policy.http.anonymous_level, st.transport, can_elicit,
                          refused="the Authorization header must be 'Bearer <token>'")
        oauth = st.oauth
        if oauth is not None and looks_like_jwt(token.strip()):
            found = oauth.verify(token.strip())
        else:
            found = resolve_token(token.strip(), st.policy_tokens, st.tokens)
        if isinstance(found, str):
            return Caller("invalid-token", st.policy.http.anonymous_level, st.transport, can_elicit, refused=found)
        return Caller(found.caller, found.level, st.transport, can_elicit, environments=found.environments,
                      tools=found.tools)

    # -- what is called -----------------------------------------------------------------------
    def parsed(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the SDK will hand them to the tool: a JSON string in a field that is not a
        string is parsed first (the SDK's `pre_parse_json`), so the gate decides on what the tool gets."""
        tool = self.registered_tool(name)
        if tool is None:
            return arguments
        try:
            return dict(tool.fn_metadata.pre_parse_json(arguments))
        except Exception:  # noqa: BLE001 - the SDK will refuse these arguments itself
            return arguments

    def facts(self, name: str, arguments: dict[str, Any], *, resolve: bool = True) -> ToolFacts:
        """What the gate knows of a call; with `resolve`, the environments the engine says it would change.

        Raises:
            Exception: whatever the tool's resolver raised: the call's targets cannot be told.
        """
        spec = self.specs.get(name)
        if spec is None or self.registered_tool(name) is None:
            return ToolFacts(name, None, read_only=False, destructive=True)
        targets: frozenset[str] = frozenset()
        if resolve and spec.environment is not None:
            found = spec.environment(arguments, self.state)
            targets = frozenset({found}) if isinstance(found, str) else (found or frozenset())
        return ToolFacts(name, spec.default_level, spec.read_only, spec.destructive, environments=targets)

    def decision(self, caller: Caller, name: str, arguments: dict[str, Any]) -> Decision:
        """The trust decision for one call (blocking: resolving targets may read the store and files).

        Level first, on the tool alone: a caller below the tool's level makes the server read nothing.
        Then, when an environment matters (protected environments, or a caller scoped to some), on every
        environment the engine says the call would change; a call whose targets cannot be resolved is
        refused. A call that reaches another tool (the compat tool) must pass that tool's gate too.
        """
        policy = self.state.policy
        arguments = self.parsed(name, arguments)
        decision = decide(policy, caller, self.facts(name, arguments, resolve=False))
        if isinstance(decision, Deny):
            return decision
        # Arguments the tool's model refuses never reach the tool (the SDK answers with the model's
        # message), so they need no targets.
        if (policy.confirm.environments or caller.environments is not None) and self._valid(name, arguments):
            try:
                facts = self.facts(name, arguments)
            except (OSError, WorldError):
                # The world failed, not the call: the target may be anything, so it is protected.
                facts = dataclasses.replace(self.facts(name, arguments, resolve=False),
                                            environments=frozenset({UNKNOWN_ENVIRONMENT}))
            except InputError as exc:
                # The call names nothing that exists (an unknown pipeline, an invalid file): refused with
                # the very answer the tool would give, so an agent reads one message for one mistake.
                return Deny(self._masked(str(exc), arguments), unresolved=True)
            except Exception as exc:  # noqa: BLE001 - an unresolvable target must not open the gate
                return Deny(f"cannot tell which environments {name!r} would change, so it is refused: "
                            + self._masked(str(exc) or type(exc).__name__, arguments), unresolved=True)
            decision = decide(policy, caller, facts)
            if not isinstance(decision, Deny):
                decision = dataclasses.replace(decision, targets=facts.targets)
        spec = self.specs.get(name)
        if spec is not None and spec.delegate is not None and not isinstance(decision, Deny):
            target = spec.delegate(arguments)
            if target is not None:
                tname, targs = target
                decision = _combine(decision, self.decision(caller, tname, targs))
        return decision

    async def _decide(self, caller: Caller, name: str, arguments: dict[str, Any]) -> Decision:
        """`decision`, in a worker thread only when it may read the store or files (resolving targets):
        most calls are decided on the level alone, and need not queue for a thread."""
        spec = self.specs.get(name)
        policy = self.state.policy
        resolves = spec is not None and (spec.environment is not None or spec.delegate is not None) and (
            bool(policy.confirm.environments) or caller.environments is not None)
        if not resolves:
            return self.decision(caller, name, arguments)
        return await anyio.to_thread.run_sync(self.decision, caller, name, arguments)

    def _valid(self, name: str, arguments: dict[str, Any]) -> bool:
        tool = self.registered_tool(name)
        if tool is None:
            return False
        try:
            tool.fn_metadata.arg_model.model_validate(arguments)
        except ValidationError:
            return False
        return True

    def _masked(self, message: str, arguments: dict[str, Any]) -> str:
        """An engine message about the call, secrets masked as a tool's error would be."""
        from server.tools._errors import mask_text, secret_values

        variables = arguments.get("variables")
        extra = [(str(k), str(v)) for k, v in variables.items()] if isinstance(variables, dict) else []
        return mask_text(message, secret_values(self.state, extra))

    # -- the gate ------------------------------------------------------------------------------
    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Decide, then run the tool only if allowed; audit every decision.

        Raises:
            ToolError: refused by the policy, declined by the human, or the tool failed.
        """
        started = time.monotonic()
        caller = self.caller(context)
        decision = await self._decide(caller, name, arguments)
        if isinstance(decision, Confirm) and not self._can_confirm(name):
            decision = Deny(
                f"{name!r} on environment {decision.environment!r} needs a human confirmation that this tool "
                "cannot ask for; refused"
            )
        held: list[str] = []
        if not isinstance(decision, Deny) and caller.transport in ("http", "sse"):
            kinds = ["calls", *(["expensive_calls"] if _expensive(arguments) else [])]
            for kind in kinds:
                refusal = self.state.usage.take(self.state.policy, caller.name, caller.level, kind)
                if refusal is not None:
                    decision = Deny(refusal)
                    break
                held.append(kind)
        call = _CallState(decision)
        verdict = "denied" if isinstance(decision, Deny) else "allowed"
        reason: str | None = decision.reason if isinstance(decision, Allow | Deny) else decision.question
        outcome: str | None = None
        token = _CALL.set(call)
        try:
            known = {t.name for t in await super().list_tools()}
            if name not in known:
                # Whatever the level: a refusal would send the caller after a level it does not need.
                refused = "refused by the trust policy: " if isinstance(decision, Deny) else ""
                raise ToolError(f"{refused}Unknown tool {name!r}{did_you_mean(name, known)}; tools you can call: "
                                + ", ".join(self.callable_tools(caller)))
            if isinstance(decision, Deny):
                if decision.unresolved:
                    outcome = "error"
                raise ToolError(f"refused by the trust policy: {decision.reason}")
            result = await super().call_tool(name, arguments, context)
            if isinstance(result, InputRequiredResult):
                verdict, outcome = "confirmation_requested", None
            else:
                outcome = "error" if result.is_error else "ok"
            return result
        except ToolError:
            if verdict != "denied":
                outcome = "error"
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            _CALL.reset(token)
            for kind in held:
                self.state.usage.give(caller.name, kind)
            if isinstance(decision, Confirm):
                if call.answered is True:
                    verdict = "confirmed"
                elif call.answered is False:
                    verdict, outcome = "declined", None
            self._audit(caller, name, arguments, verdict, reason, outcome, started)

    async def gate_only(self, name: str, arguments: dict[str, Any], context: Context | None) -> None:
        """The gate of tool `name` for a read that is not a tool call (a resource); audited.

        Raises:
            ToolError: refused by the policy.
        """
        started = time.monotonic()
        caller = self.caller(context)
        decision = await self._decide(caller, name, arguments)
        if isinstance(decision, Confirm):
            decision = Deny(f"{name!r} needs a confirmation, which a resource read cannot ask for")
        verdict = "denied" if isinstance(decision, Deny) else "allowed"
        self._audit(caller, f"{name} (resource)", arguments, verdict, decision.reason, None, started)
        if isinstance(decision, Deny):
            raise ToolError(f"refused by the trust policy: {decision.reason}")

    def callable_tools(self, caller: Caller) -> list[str]:
        """The registered tools `caller` may call (some after a confirmation), in registration order;
        the compatibility tool only when the policy offers it."""
        names = []
        for name, spec in self.specs.items():
            if spec.delegate is not None and not self.state.policy.compatibility:
                continue
            # On the level alone: a listing has no arguments whose targets could be resolved.
            if not isinstance(decide(self.state.policy, caller, self.facts(name, {}, resolve=False)), Deny):
                names.append(name)
        return names

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        """`tools/list` shows what the caller can call; the gate still refuses the rest by name."""
        result = await super()._handle_list_tools(ctx, params)
        allowed = set(self.callable_tools(self.caller(Context(request_context=ctx, mcp_server=self))))
        ours = set(self.specs)
        return ListToolsResult(tools=[t for t in result.tools if t.name in allowed or t.name not in ours])

    def _can_confirm(self, name: str) -> bool:
        tool = self.registered_tool(name)
        if tool is None:
            return False
        return any(marker.fn is human_confirmation for marker, _ in tool.resolved_params.values())

    def _audit(
        self, caller: Caller, tool: str, arguments: dict[str, Any], decision: str, reason: str | None,
        outcome: str | None, started: float,
    ) -> None:
        self.state.audit.write(AuditRecord(
            ts=time.time(), transport=caller.transport, caller=caller.name, level=str(caller.level), tool=tool,
            args_sha256=args_digest(arguments), decision=decision, reason=reason, outcome=outcome,
            duration_ms=(time.monotonic() - started) * 1000,
        ))


def server_of(ctx: Context) -> CicdServer:
    server = ctx.mcp_server
    assert isinstance(server, CicdServer), "tools run only inside CicdServer"
    return server


def state_of(ctx: Context) -> AppState:
    return server_of(ctx).state
