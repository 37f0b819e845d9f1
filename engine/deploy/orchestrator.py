"""The deployment orchestrator: environments in, verified releases (or an honest failure) out.

Theory of operation
-------------------
`create_deployment` records a *planned* deployment (validated strategy and options, absolute
artifact paths). `adeploy` then:

1. reads what runs now from the target (`instances`) and the live, verified version from the
   store; plans the rollout (pure, `strategies.plan`) - bad input is refused here, unchanged;
2. takes the environment's lock (the store's one-active-deployment index: a second deployment
   gets ConflictError naming the first) and moves planned -> in_progress;
3. runs the pre-deploy hooks and prepares the release - a failure here ends the deployment as
   FAILURE with "nothing was changed";
4. executes the plan step by step (operations.execute_plan), then the post-deploy hooks;
5. on success records the version as live and verified; on failure, with rollback on and a
   previous verified version, moves failure -> rolling_back and restores it
   (operations.restore_version): ROLLED_BACK only when the old version answers its health
   checks again, else ROLLBACK_FAILED. With nothing to roll back to, the new version's
   instances are stopped and the status stays FAILURE with that reason.

Every step and event is written to the store and passed to `on_event` as an `Event`. What a
deployment records (events, step details, reasons, the result) is masked first: hook and probe
output and remote errors are foreign text, and a hook sees the server's whole environment, so
the values of its secret-looking variables (`logs.secret_looking`) never reach the store or a caller.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from engine._clock import Clock, SystemClock
from engine._secrets import Masker, secret_looking
from engine._sync import blocking
from engine.deploy._environments import Environments
from engine.deploy._hooks import run_hooks
from engine.deploy.config import (
    Environment,
    Hook,
    check_release_names,
    load_deployment_config,
)
from engine.deploy.history import DeploymentHistory, DeploymentRecord
from engine.deploy.operations import OpsContext, execute_plan, restore_version, stop_instances
from engine.deploy.routers.base import Router
from engine.deploy.states import DeploymentStatus
from engine.deploy.strategies import STRATEGIES, Plan, Start, describe, parse_options, plan, without_slots
from engine.deploy.targets.base import COLORS, Address, Instance, Release, Target
from engine.errors import CicdError, InputError, NotFoundError, WorldError
from engine.events import Event, EventCallback, emit
from engine.settings import Settings, resolve_settings
from engine.store.base import Store

__all__ = ["DeploymentOrchestrator", "DeploymentResult", "deploy_artifacts", "manage_deployments"]


@dataclass
class DeploymentResult:
    deployment_id: str
    name: str
    environment: str
    service: str
    version: str
    previous_version: str | None
    strategy: str
    status: DeploymentStatus
    reason: str | None
    duration: float
    logs: list[str] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == DeploymentStatus.SUCCESS


@dataclass
class _Run:
    """One deployment being executed: its record, the callback, the log lines gathered and what
    must be masked in anything it records."""

    rec: DeploymentRecord
    on_event: EventCallback | None
    masker: Masker = field(default_factory=Masker)
    logs: list[str] = field(default_factory=list)

    def mask(self, text: str | None) -> str | None:
        return None if text is None else self.masker.mask(text)


def _masker_for(env: Environment) -> Masker:
    """The secrets a deployment to `env` can print: secret-looking variables of the environment its
    hooks run with (the server's own, the hooks' `env`) and of the service's `env`."""
    values = secret_looking(os.environ) + secret_looking(env.env)
    for hook in (*env.pre_deploy_hooks, *env.post_deploy_hooks):
        values += secret_looking(hook.env)
    return Masker(values)


class DeploymentOrchestrator:
    """Deploys services to environments. See the module docstring.

    `targets` / `routers` map an environment name to a ready Target / Router (tests pass fakes);
    other environments get theirs from the TARGETS / ROUTERS registries.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        workspace_dir: str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        targets: dict[str, Target] | None = None,
        routers: dict[str, Router | None] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = resolve_settings(workspace_dir, settings)
        self.workspace = self.settings.workspace
        self._owns_store = store is None
        if store is None:
            from engine.store import open_store

            store = open_store(self.workspace)
        self.store = store
        self.history = DeploymentHistory(store)
        self._environments = Environments(store, self.settings, targets=targets, routers=routers)
        self.clock: Clock = clock or SystemClock()
        self._http = http
        self.config_path = Path(config_path).resolve() if config_path is not None else None
        if self.config_path is not None:
            for env in load_deployment_config(self.config_path).environments:
                self.register_environment(env, source_path=str(self.config_path))

    # -- environments ---------------------------------------------------------------------------
    @property
    def environments(self) -> dict[str, Environment]:
        """The environments known to this orchestrator so far, by name."""
        return self._environments.by_name

    def register_environment(self, environment: Environment, *, source_path: str | None = None) -> Environment:
        """Add (or replace) an environment; it is also saved so other processes can use it by name."""
        return self._environments.register(environment, source_path=source_path)

    add_environment = register_environment  # the original design's name

    def get_environment(self, name: str) -> Environment:
        """Raises: NotFoundError: no environment of that name here or in the store."""
        return self._environments.get(name)

    def target_for(self, env: Environment) -> Target:
        """The environment's target (built from the registry on first use).

        Raises:
            InputError: the environment names no usable target.
        """
        return self._environments.target_for(env)

    def router_for(self, env: Environment) -> Router | None:
        return self._environments.router_for(env)

    # -- deployments ----------------------------------------------------------------------------
    def create_deployment(
        self,
        name: str,
        version: str,
        environment_name: str,
        artifacts: Sequence[str | os.PathLike[str]] = (),
        strategy: str | None = None,
        rollback_on_failure: bool | None = None,
        *,
        service: str | None = None,
        run_id: str | None = None,
        **strategy_options: Any,
    ) -> DeploymentRecord:
        """Record a planned deployment of `version` to an environment.

        Artifacts that exist as paths (relative to the current directory) are made absolute;
        other strings (image references) are kept as given.

        Raises:
            NotFoundError: no such environment.
            InputError: unknown strategy, invalid options, an empty name, or a version or service that is
                not a safe release name (see config.check_release_names).
        """
        if not name or not str(version):
            raise InputError("a deployment needs a name and a version")
        env = self.get_environment(environment_name)
        # Targets make release directories, labels and tags of these: '.', '..' or 'a/b' would
        # name the wrong directory (prepare replaces it whole).
        check_release_names(service or env.service_name, str(version))
        strategy = strategy or env.strategy or self.settings.DEPLOY_STRATEGY
        options = (
            {**env.strategy_options, **strategy_options}
            if strategy == env.strategy or not env.strategy
            else dict(strategy_options)
        )
        # Options in the environment may belong to another strategy than the one asked for.
        allowed = set(STRATEGIES[strategy].options.model_fields) if strategy in STRATEGIES else set()
        options = {k: v for k, v in options.items() if k in allowed or k in strategy_options}
        parse_options(strategy, options)
        if rollback_on_failure is None:
            rollback_on_failure = env.rollback_on_failure
        if rollback_on_failure is None:
            rollback_on_failure = self.settings.ROLLBACK_AUTO_TRIGGER
        arts = [str(Path(a).resolve()) if Path(a).exists() else str(a) for a in artifacts]
        rec = DeploymentRecord(
            deployment_id=f"d-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}",
            name=name,
            service=service or env.service_name,
            environment=env.name,
            version=str(version),
            strategy=strategy,
            status=DeploymentStatus.PLANNED,
            created_at=time.time(),
            strategy_options=options,
            artifacts=arts,
            rollback_on_failure=bool(rollback_on_failure),
            target_kind=(env.target.kind if env.target else "ssh" if env.host else self.settings.DEPLOY_TARGET),
            run_id=run_id,
        )
        self.history.create(rec)
        return rec

    def deploy(self, name: str, on_event: EventCallback | None = None) -> DeploymentResult:
        """Run the planned deployment called `name` (blocking). See `adeploy`."""
        return blocking(self.adeploy, name, on_event, thread_name=f"deploy-{name}")

    async def adeploy(self, name: str, on_event: EventCallback | None = None) -> DeploymentResult:
        """Run the planned deployment called `name` and return what happened.

        Raises:
            NotFoundError: no deployment of that name.
            InputError: it is not planned (already run), or its plan is impossible (e.g. canary
                without a router); nothing was changed.
            ConflictError: another deployment is in progress in the environment (named).
        """
        rec = self.history.latest_by_name(name)
        if rec is None:
            raise NotFoundError(f"no deployment named {name!r}; create it first with create_deployment")
        if rec.status != DeploymentStatus.PLANNED:
            raise InputError(
                f"deployment {name!r} ({rec.deployment_id}) already ran ({rec.status}); create it again to deploy again"
            )
        env = self.get_environment(rec.environment)
        target = self.target_for(env)
        router = self.router_for(env)
        run = _Run(rec, on_event, _masker_for(env))
        try:
            current = await target.instances(rec.service)
        except WorldError as exc:
            raise type(exc)(f"cannot read what runs in {env.name!r}: {exc}") from exc
        live_rel = self.history.live_release(env.name, rec.service)
        layout: dict[str | None, list[Instance]] = {None: target.slots(rec.service)}
        if rec.strategy in ("blue_green", "canary"):
            for color in COLORS:
                layout[color] = target.slots(rec.service, color)
        the_plan = plan(
            rec.strategy,
            rec.version,
            current=current,
            layout=layout,
            has_router=router is not None,
            options=rec.strategy_options,
            live_version=live_rel.version if live_rel else None,
        )
        self.history.begin(rec.deployment_id, live_rel.version if live_rel else None, current)
        run.rec = self.history.get(rec.deployment_id)
        started = time.monotonic()
        owns_http = self._http is None
        http = self._http or httpx.AsyncClient(follow_redirects=False)
        try:
            ctx = OpsContext(
                environment=env,
                service=rec.service,
                target=target,
                router=router,
                clock=self.clock,
                http=http,
                emit=lambda kind, msg, data: self._emit(run, kind, msg, data),
                on_step=lambda seq, status, detail: self._step(run, seq, status, detail),
            )
            status, reason, instances = await self._execute(run, env, ctx, the_plan, current, live_rel)
        except BaseException as exc:
            # Cancelled or crashed mid-way: never leave the environment locked.
            with anyio.CancelScope(shield=True):
                self._finish_abruptly(run, exc)
            raise
        finally:
            if owns_http:
                with anyio.CancelScope(shield=True):
                    await http.aclose()
        final = self.history.get(rec.deployment_id)
        result = DeploymentResult(
            deployment_id=rec.deployment_id,
            name=rec.name,
            environment=env.name,
            service=rec.service,
            version=rec.version,
            previous_version=final.previous_version,
            strategy=rec.strategy,
            status=status,
            reason=run.mask(reason),
            duration=final.duration if final.duration is not None else time.monotonic() - started,
            logs=run.logs,
            instances=instances,
        )
        await self._emit(
            run,
            "deploy_finished",
            f"{rec.name}: {status}" + (f": {reason}" if reason else ""),
            {"status": str(status), "duration": result.duration},
        )
        return result

    async def _execute(
        self,
        run: _Run,
        env: Environment,
        ctx: OpsContext,
        the_plan: Plan,
        current: list[Instance],
        live_rel: Any,
    ) -> tuple[DeploymentStatus, str | None, list[Instance]]:
        rec = run.rec
        await self._emit(
            run,
            "deploy_started",
            f"deploying {rec.service} {rec.version} to {env.name} ({rec.strategy}); "
            f"live now: {rec.previous_version or 'nothing'}",
            {
                "version": rec.version,
                "previous_version": rec.previous_version,
                "strategy": rec.strategy,
                "steps": [describe(s)[1] for s in the_plan.steps],
            },
        )
        self.history.save_plan(rec.deployment_id, [describe(s) for s in the_plan.steps])
        live = {i.slot: i for i in current}

        # Nothing has changed until the plan starts: a failure before it is a plain FAILURE.
        failure = await self._hooks(run, env, env.pre_deploy_hooks, "pre-deploy")
        release = Release(
            service=rec.service,
            version=rec.version,
            deployment_id=rec.deployment_id,
            artifacts=tuple(rec.artifacts),
            env=dict(env.env),
        )
        skipped: dict[str, str] = {}
        if failure is None:
            try:
                release = await ctx.target.prepare(release)
            except CicdError as exc:
                failure = f"cannot prepare {rec.version}: {exc}"
        if failure is None and release.prepared.get("skipped_slots"):
            # Hosts that failed to prepare within the target's tolerance (SSH max_fail_percentage)
            # are left out of the rollout: they keep what they run.
            skipped = json.loads(release.prepared["skipped_slots"])
            the_plan = without_slots(the_plan, set(skipped))
            self.history.replace_plan(rec.deployment_id, [describe(s) for s in the_plan.steps])
            await self._emit(
                run,
                "slots_skipped",
                "left out of the rollout (preparation failed within max_fail_percentage): "
                + "; ".join(dict.fromkeys(skipped.values())),
                {"slots": sorted(skipped)},
            )
            if not any(isinstance(step, Start) for step in the_plan.steps):
                failure = f"cannot prepare {rec.version} anywhere: " + "; ".join(dict.fromkeys(skipped.values()))
        if failure is not None:
            refused = f"{failure}; nothing was changed"
            self._move(run, DeploymentStatus.FAILURE, reason=refused, instances=current)
            return DeploymentStatus.FAILURE, refused, current

        outcome = await execute_plan(ctx, the_plan, {rec.version: release}, live)
        reason: str | None = outcome.reason
        if outcome.ok:
            reason = await self._hooks(run, env, env.post_deploy_hooks, "post-deploy")
        if outcome.ok and reason is None:
            instances = list(live.values())
            self.history.mark_live(env.name, rec.service, rec.version, rec.deployment_id, rec.artifacts, "deployed")
            note = (
                "deployed except where the release could not be prepared (those hosts keep their version): "
                + "; ".join(dict.fromkeys(skipped.values()))
                if skipped
                else None
            )
            self._move(run, DeploymentStatus.SUCCESS, reason=note, instances=instances)
            return DeploymentStatus.SUCCESS, note, instances
        assert reason is not None
        return await self._fail(run, env, ctx, reason, live, current, live_rel, len(the_plan.steps))

    async def _fail(
        self,
        run: _Run,
        env: Environment,
        ctx: OpsContext,
        reason: str,
        live: dict[str, Instance],
        before: list[Instance],
        live_rel: Any,
        next_seq: int,
    ) -> tuple[DeploymentStatus, str | None, list[Instance]]:
        rec = run.rec
        self._move(run, DeploymentStatus.FAILURE, reason=reason, instances=list(live.values()))
        if not rec.rollback_on_failure:
            return DeploymentStatus.FAILURE, f"{reason}; automatic rollback is off", list(live.values())
        if live_rel is None:
            # Nothing verified to go back to: take the failed version down rather than leave it half-up.
            failed = [i for i in live.values() if i.version == rec.version]
            note = ""
            try:
                await stop_instances(ctx, failed)
                for i in failed:
                    live.pop(i.slot, None)
                if failed:
                    note = f"; its {len(failed)} instance(s) were stopped"
            except CicdError as exc:
                note = f"; stopping its instances failed too: {exc}"
            final = (
                f"{reason}; nothing to roll back to (no earlier verified version of {rec.service} in {env.name}){note}"
            )
            self._set_reason(run, final, live)
            return DeploymentStatus.FAILURE, final, list(live.values())

        self._move(run, DeploymentStatus.ROLLING_BACK, reason=reason)
        await self._emit(
            run,
            "rollback_started",
            f"rolling back to {live_rel.version}: {reason}",
            {"to_version": live_rel.version},
        )
        previous = Release(
            service=rec.service,
            version=live_rel.version,
            deployment_id=live_rel.deployment_id,
            artifacts=tuple(live_rel.artifacts),
            env=dict(env.env),
        )
        layout = [i for i in before if i.version == live_rel.version] or ctx.target.slots(rec.service)

        async def record_plan(p: Plan) -> None:
            self.history.save_plan(rec.deployment_id, [describe(s) for s in p.steps], start=next_seq)

        try:
            restored = await restore_version(
                ctx, previous, live=live, layout=layout, first_seq=next_seq, on_plan=record_plan
            )
            ok, why = restored.ok, restored.reason
        except CicdError as exc:
            ok, why = False, str(exc)
        instances = list(live.values())
        if ok:
            self.history.mark_live(
                env.name,
                rec.service,
                previous.version,
                previous.deployment_id,
                previous.artifacts,
                "rolled_back",
            )
            final = f"{reason}; rolled back to {previous.version}, which answers its health checks again"
            self._move(run, DeploymentStatus.ROLLED_BACK, reason=final, instances=instances)
            await self._emit(run, "rollback_finished", final, {"ok": True})
            return DeploymentStatus.ROLLED_BACK, final, instances
        final = f"{reason}; rollback to {previous.version} failed: {why}"
        self._move(run, DeploymentStatus.ROLLBACK_FAILED, reason=final, instances=instances)
        await self._emit(run, "rollback_finished", final, {"ok": False})
        return DeploymentStatus.ROLLBACK_FAILED, final, instances

    def _move(
        self, run: _Run, new: DeploymentStatus, *, reason: str | None = None,
        instances: Sequence[Instance] | None = None,
    ) -> None:
        """Raises: InvalidTransition: the move is not allowed from the current status."""
        self.history.move(run.rec.deployment_id, new, reason=run.mask(reason), instances=instances)

    def _set_reason(self, run: _Run, reason: str, live: dict[str, Instance]) -> None:
        self.history.set_outcome(run.rec.deployment_id, run.mask(reason), list(live.values()))

    def _finish_abruptly(self, run: _Run, exc: BaseException) -> None:
        try:
            rec = self.history.get(run.rec.deployment_id)
            why = f"interrupted: {type(exc).__name__}: {exc}".rstrip(": ")
            if rec.status == DeploymentStatus.IN_PROGRESS:
                self._move(run, DeploymentStatus.FAILURE, reason=why)
            elif rec.status == DeploymentStatus.ROLLING_BACK:
                self._move(run, DeploymentStatus.ROLLBACK_FAILED, reason=why)
        except CicdError:
            pass

    async def _hooks(self, run: _Run, env: Environment, hooks: Sequence[Hook], phase: str) -> str | None:
        """Run hooks in order; the first failure's description, or None."""
        rec = run.rec
        deploy_env = {
            "DEPLOY_ID": rec.deployment_id,
            "DEPLOY_NAME": rec.name,
            "DEPLOY_SERVICE": rec.service,
            "DEPLOY_ENVIRONMENT": env.name,
            "DEPLOY_VERSION": rec.version,
            "DEPLOY_PREVIOUS_VERSION": rec.previous_version or "",
        }

        async def emit_hook(kind: str, message: str, data: dict[str, Any]) -> None:
            await self._emit(run, kind, message, data)

        return await run_hooks(hooks, phase, deploy_env, str(self.workspace), emit_hook)

    async def _emit(self, run: _Run, kind: str, message: str, data: dict[str, Any]) -> None:
        message = run.masker.mask(message)
        data = {str(k): run.masker.mask_obj(v) for k, v in data.items()}
        now = time.time()
        run.logs.append(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {kind}: {message}")
        self.history.add_event(run.rec.deployment_id, kind, message, data)
        if run.on_event is not None:
            await emit(run.on_event, Event(
                kind=kind, subject="deployment", subject_id=run.rec.deployment_id, message=message,
                job=run.rec.name, status=str(self.history.get(run.rec.deployment_id).status), data=data))

    async def _step(self, run: _Run, seq: int, status: str, detail: str | None) -> None:
        self.history.step(run.rec.deployment_id, seq, status, run.mask(detail))

    # -- reading --------------------------------------------------------------------------------
    def get_deployment(self, name_or_id: str) -> DeploymentRecord:
        """Raises: NotFoundError: no deployment by that id or name."""
        try:
            return self.history.get(name_or_id)
        except NotFoundError:
            rec = self.history.latest_by_name(name_or_id)
            if rec is None:
                raise
            return rec

    def list_deployments(self, environment: str | None = None, limit: int = 50) -> list[DeploymentRecord]:
        return self.history.recent(environment, limit)

    # -- what runs, stopping it, its output (environment_status / stop_service / get_service_logs) --
    async def service_instances(self, environment: str, service: str | None = None) -> list[Instance]:
        """What runs now for the service in the environment, read from the world.

        Raises:
            NotFoundError: no such environment.
            TargetError: the target cannot be reached.
        """
        env = self.get_environment(environment)
        return await self.target_for(env).instances(service or env.service_name)

    async def stop_service(self, environment: str, service: str | None = None) -> list[Instance]:
        """Stop every instance of the service in the environment (gracefully, then forcibly); returns
        the instances it stopped. Refused while a deployment holds the environment.

        Raises:
            NotFoundError: no such environment.
            ConflictError: a deployment or rollback is in progress there.
            TargetError: the target cannot be reached or an instance would not stop.
        """
        from engine.errors import ConflictError

        env = self.get_environment(environment)
        self.history.clear_stale(env.name)
        holder = self.history.active(env.name)
        if holder is not None:
            raise ConflictError(f"deployment {holder.deployment_id} ({holder.status}) holds {env.name}; stop the "
                                "service when it has finished")
        target = self.target_for(env)
        found = await target.instances(service or env.service_name)
        for instance in found:
            await target.stop(instance)
        return found

    async def instance_address(self, environment: str, instance: Instance) -> Address:
        return await self.target_for(self.get_environment(environment)).address(instance)

    def service_log(self, environment: str, instance: Instance, max_bytes: int) -> str | None:
        """The end of an instance's output, or None when its target kind cannot show it."""
        target = self.target_for(self.get_environment(environment))
        tail = getattr(target, "log_tail", None)
        return None if tail is None else str(tail(instance, max_bytes))

    async def aclose(self) -> None:
        await self._environments.aclose()
        if self._owns_store:
            self.store.close()


def manage_deployments(
    config_path: str | os.PathLike[str],
    workspace_dir: str | os.PathLike[str] | None = None,
) -> DeploymentOrchestrator:
    """An orchestrator loaded with the environments of a deployment config file.

    Raises:
        SpecError: the file is invalid (file:line and field named).
        NotFoundError: the file does not exist.
    """
    return DeploymentOrchestrator(config_path, workspace_dir)


async def deploy_artifacts(
    workspace_dir: str | os.PathLike[str],
    environment: str | Environment,
    service: str | None,
    version: str,
    artifacts: Sequence[str | os.PathLike[str]],
    strategy: str | None = None,
    on_event: EventCallback | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    rollback_on_failure: bool | None = None,
    store: Store | None = None,
    **strategy_options: Any,
) -> DeploymentResult:
    """Deploy a pipeline run's artifacts (the pipeline runner's entry point).

    `environment` is an Environment, or the name of one registered earlier (in this workspace's
    store, or in `config_path`). The deployment is named `<service>-<version>`.

    Raises:
        NotFoundError, InputError, ConflictError: as `create_deployment` / `adeploy`.
    """
    orch = DeploymentOrchestrator(config_path, workspace_dir, store=store)
    try:
        if isinstance(environment, Environment):
            orch.register_environment(environment)
            env = environment
        else:
            env = orch.get_environment(environment)
        svc = service or env.service_name
        name = f"{svc}-{version}"
        orch.create_deployment(
            name,
            version,
            env.name,
            list(artifacts),
            strategy,
            rollback_on_failure,
            service=svc,
            run_id=run_id,
            **strategy_options,
        )
        return await orch.adeploy(name, on_event)
    finally:
        await orch.aclose()
