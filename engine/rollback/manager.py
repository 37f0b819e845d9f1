"""RollbackManager: plan a rollback from the store's history, execute it on the target, resume it.

The manager is the edge: it reads deployments and verified releases (`DeploymentHistory`), what
runs now (the environment's target), past step durations (the journal), hands them to the pure
planner (`plans`), stores the plan, and runs it with `executor.run_plan`. The live-version record
of the environment is changed only when every step, verify_health included, passed.
"""

from __future__ import annotations

import getpass
import os
import secrets
import time
from dataclasses import replace
from typing import Any

import anyio
import httpx

from engine._clock import Clock, SystemClock
from engine._sync import blocking
from engine.deploy.config import Environment
from engine.deploy.history import DeploymentHistory, DeploymentRecord, ReleaseRecord
from engine.deploy.operations import OpsContext
from engine.deploy.orchestrator import DeploymentOrchestrator
from engine.deploy.routers.base import Router
from engine.deploy.states import DeploymentStatus
from engine.deploy.targets.base import COLORS, Instance, Release, Target, other_color
from engine.errors import ConflictError, InputError, NotFoundError, WorldError
from engine.events import EventCallback
from engine.rollback._journal import Journal, owner_alive
from engine.rollback._runbook import RunbookContext, render_runbook
from engine.rollback.executor import ExecContext, RollbackExecution, StepResult, check_executable, run_plan
from engine.rollback.plans import (
    PlanInputs,
    RollbackPlan,
    RollbackStrategy,
    StepTimeouts,
    build_steps,
    estimate,
    liveness,
    parse_strategy,
)
from engine.settings import Settings, resolve_settings
from engine.store.base import Row, Store

__all__ = ["RollbackManager", "handle_rollback"]



def _verify_timeout(env: Environment) -> float:
    """Seconds a verify may take: every check's worst case (delay + probes x (timeout + interval))."""
    total = 0.0
    for check in env.health_checks:
        total += check.initial_delay + check.retries * (check.timeout + check.interval)
    return max(10.0, (total or 10 * 2.5) + 5.0)


class RollbackManager:
    """Plans, executes and resumes rollbacks of deployments in a workspace.

    `orchestrator` (or `targets` / `routers` by environment name, as for DeploymentOrchestrator)
    supplies the environments' targets and routers; by default they are built from the store.
    """

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
        orchestrator: DeploymentOrchestrator | None = None,
        clock: Clock | None = None,
        targets: dict[str, Target] | None = None,
        routers: dict[str, Router | None] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = resolve_settings(workspace_dir, settings)
        self._owns_store = False
        if store is None:
            if orchestrator is not None:
                store = orchestrator.store
            else:
                from engine.store import open_store

                store = open_store(self.settings.workspace)
                self._owns_store = True
        self.store = store
        self._owns_orch = orchestrator is None
        self.orchestrator = orchestrator or DeploymentOrchestrator(
            workspace_dir=self.settings.workspace,
            store=store,
            settings=self.settings,
            clock=clock,
            targets=targets,
            routers=routers,
            http=http,
        )
        self.clock: Clock = clock or SystemClock()
        self._http = http
        self.history = DeploymentHistory(store)
        self.journal = Journal(store)

    # -- planning -------------------------------------------------------------------------------
    def _deployment(self, deployment_id: str) -> DeploymentRecord:
        try:
            rec = self.orchestrator.get_deployment(deployment_id)
        except NotFoundError:
            import difflib

            recent = self.history.recent(None, limit=50)
            names = list(dict.fromkeys([*(d.deployment_id for d in recent), *(d.name for d in recent)]))
            close = difflib.get_close_matches(deployment_id, names, n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            listed = ", ".join(d.deployment_id for d in recent[:10]) or "none yet"
            raise NotFoundError(
                f"no deployment {deployment_id!r} (by id or name) to roll back{hint}; recent deployments: {listed}"
            ) from None
        if rec.status == DeploymentStatus.PLANNED:
            raise InputError(f"deployment {rec.deployment_id} never ran (planned): there is nothing to roll back")
        if rec.status.active:
            raise ConflictError(
                f"deployment {rec.deployment_id} is still {rec.status}; wait for it to finish before rolling back"
            )
        return rec

    def _to_release(self, rec: DeploymentRecord, to_version: str | None) -> ReleaseRecord:
        history = self.history.verified_releases(rec.environment, rec.service, limit=500)
        if to_version is not None:
            for r in history:
                if r.version == str(to_version):
                    return r
            known = ", ".join(dict.fromkeys(r.version for r in history)) or "none"
            raise InputError(
                f"version {to_version!r} of {rec.service} was never verified healthy in {rec.environment} "
                f"(verified versions, newest first: {known})"
            )
        since = rec.started_at or rec.created_at
        for r in history:
            if r.verified_at < since and r.version != rec.version:
                return r
        raise InputError(
            f"nothing to go back to: no version of {rec.service} other than {rec.version} was verified healthy "
            f"in {rec.environment} before deployment {rec.deployment_id}"
        )

    async def acreate_rollback_plan(
        self,
        deployment_id: str,
        strategy: str | RollbackStrategy | None = None,
        reason: str = "",
        to_version: str | None = None,
    ) -> RollbackPlan:
        """Plan (and store) the rollback of a deployment. See `create_rollback_plan`."""
        rec = self._deployment(deployment_id)
        strat = parse_strategy(strategy or self.settings.ROLLBACK_DEFAULT_STRATEGY)
        to = self._to_release(rec, to_version)
        env = self.orchestrator.get_environment(rec.environment)
        target = self.orchestrator.target_for(env)
        router = self.orchestrator.router_for(env)
        try:
            current = await target.instances(rec.service)
        except WorldError as exc:
            raise type(exc)(f"cannot read what runs in {env.name!r}: {exc}") from exc
        layout, note = self._layout(rec, to.version, current, target, strat)
        live = self.history.live_release(rec.environment, rec.service)
        newest = next(
            (d for d in self.history.recent(rec.environment, limit=200)
             if d.service == rec.service and d.status != DeploymentStatus.PLANNED),
            None,
        )
        state = liveness(
            deployment_id=rec.deployment_id,
            version=rec.version,
            status=str(rec.status),
            newest=newest is not None and newest.deployment_id == rec.deployment_id,
            live_version=live.version if live else None,
            live_deployment_id=live.deployment_id if live else None,
            live_since=live.verified_at if live else None,
            running=sorted({i.version for i in current if i.alive and i.version}),
            to_version=to.version,
        )
        config = env.target
        stop_timeout = float(getattr(config, "stop_timeout", 10) or 10)
        batch = rec.strategy_options.get("batch_size", 1)
        timeouts = StepTimeouts(stop=stop_timeout + 15, verify=_verify_timeout(env))
        inputs = PlanInputs(
            deployment_id=rec.deployment_id,
            environment=rec.environment,
            service=rec.service,
            from_version=state.from_version,
            to_version=to.version,
            to_deployment_id=to.deployment_id,
            target_kind=rec.target_kind or (config.kind if config else self.settings.DEPLOY_TARGET),
            current=current,
            layout=layout,
            has_router=router is not None,
            timeouts=timeouts,
            batch_size=batch if isinstance(batch, int) else 1,
        )
        steps, total, basis = estimate(build_steps(strat, inputs), self.journal.measured(rec.environment))
        plan = RollbackPlan(
            plan_id=f"rb-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}",
            deployment_id=rec.deployment_id,
            environment=rec.environment,
            service=rec.service,
            strategy=strat,
            reason=reason,
            from_version=state.from_version,
            to_version=to.version,
            to_deployment_id=to.deployment_id,
            to_artifacts=list(to.artifacts),
            target_kind=inputs.target_kind,
            steps=steps,
            executable=strat is not RollbackStrategy.MANUAL,
            estimated_duration=total,
            estimate_basis=basis,
            created_at=time.time(),
            notes=[note] if note else [],
            deployment_live=state.live,
            live_version=live.version if live else None,
            live_deployment_id=live.deployment_id if live else None,
            warnings=[state.warning] if state.warning else [],
        )
        if strat is RollbackStrategy.MANUAL:
            ctx = RunbookContext(
                target=config.model_dump(mode="json") if config else {"kind": inputs.target_kind},
                router=env.router.model_dump(mode="json") if env.router else None,
                health_checks=[c.model_dump(mode="json") for c in env.health_checks],
                env=dict(env.env),
                user=env.user or getpass.getuser(),
            )
            plan.runbook = render_runbook(plan, ctx)
        self.journal.save_plan(plan)
        self.history.add_event(
            rec.deployment_id,
            "rollback_planned",
            f"{strat.value} rollback to {to.version} planned ({plan.plan_id}, {len(steps)} steps, "
            f"~{total:g}s from {basis})",
            {"plan_id": plan.plan_id, "to_version": to.version, "strategy": strat.value},
        )
        return plan

    def create_rollback_plan(
        self,
        deployment_id: str,
        strategy: str | RollbackStrategy | None = None,
        reason: str = "",
        to_version: str | None = None,
    ) -> RollbackPlan:
        """Plan the rollback of a deployment and store it (retrievable by id and by deployment).

        `strategy` defaults to ROLLBACK_DEFAULT_STRATEGY; `to_version` to the last version verified
        healthy in the environment before the deployment. Nothing is changed on the target.

        Raises:
            NotFoundError: no such deployment.
            InputError: it never ran, there is nothing to go back to, `to_version` was never
                verified there, or the strategy needs a router the environment lacks.
            ConflictError: the deployment is still in progress.
            TargetError: the target cannot say what runs now.
        """
        return blocking(self.acreate_rollback_plan, deployment_id, strategy, reason, to_version)

    def _layout(
        self,
        rec: DeploymentRecord,
        to_version: str,
        current: list[Instance],
        target: Target,
        strategy: RollbackStrategy,
    ) -> tuple[list[Instance], str | None]:
        """Where to put `to_version` back: where it ran when the deployment started, else the
        other colour (blue-green, canary) or the default slots."""
        before = [i for i in rec.before if i.version == to_version]
        if before:
            return before, None
        if strategy in (RollbackStrategy.BLUE_GREEN, RollbackStrategy.CANARY):
            used = {i.color for i in current if i.alive and i.color}
            color = other_color(next(iter(used))) if len(used) == 1 else COLORS[0]
            return target.slots(
                rec.service, color
            ), f"{to_version} was not running when the deployment began: using the {color} slots"
        return target.slots(
            rec.service
        ), f"{to_version} was not running when the deployment began: using the default slots"

    def get_plan(self, plan_id: str) -> RollbackPlan:
        """Raises: NotFoundError: no such plan."""
        return self.journal.get_plan(plan_id)

    def plans_for(self, deployment_id: str) -> list[RollbackPlan]:
        """Plans made for a deployment (id or name), newest first."""
        try:
            deployment_id = self.orchestrator.get_deployment(deployment_id).deployment_id
        except NotFoundError:
            pass
        return self.journal.plans_for(deployment_id)

    # -- execution ------------------------------------------------------------------------------
    async def execute_rollback(
        self, deployment_id_or_plan_id: str, *, on_event: EventCallback | None = None, force: bool = False
    ) -> RollbackExecution:
        """Execute a plan (by plan id), or the rollback of a deployment (by deployment id or name).

        For a deployment, its newest plan is used (one with the default strategy is made when
        there is none). An unfinished execution of that plan (failed, or left running by a process
        that died) is resumed from its first unfinished step; a completed one is returned as is,
        with `replayed` set. A plan that would not undo what is live (the deployment was not live
        when planned, or another version went live since) runs only with `force`.

        Raises:
            NotFoundError: no such plan or deployment.
            InputError: the plan is MANUAL (a runbook), it would not undo what is live and `force`
                is not set, or a new plan cannot be made (see `create_rollback_plan`).
            ConflictError: a rollback runs in the environment in a live process.
        """
        try:
            plan = self.journal.get_plan(deployment_id_or_plan_id)
        except NotFoundError:
            plans = self.plans_for(deployment_id_or_plan_id)
            executable = [p for p in plans if p.executable]
            plan = executable[0] if executable else await self.acreate_rollback_plan(deployment_id_or_plan_id)
        check_executable(plan)
        last = self.journal.latest_execution(plan.plan_id)
        if last is not None and last["status"] == "completed":
            return replace(self._result(last["execution_id"], plan, 0.0, []), replayed=True)
        stale = self._not_live(plan)
        if stale and not force:
            raise InputError(
                f"plan {plan.plan_id}: {stale}. Nothing was done; call execute_rollback again with force=true "
                "to run it anyway, or plan the rollback of the deployment that is live"
            )
        if last is not None:
            return await self._run(plan, last["execution_id"], on_event, resume=True)
        return await self._run(plan, f"rx-{secrets.token_hex(6)}", on_event, resume=False)

    def _not_live(self, plan: RollbackPlan) -> str | None:
        """Why executing `plan` would not undo what is live now, or None when it would."""
        if not plan.deployment_live:
            return plan.warnings[0] if plan.warnings else f"deployment {plan.deployment_id} is not live"
        live = self.history.live_release(plan.environment, plan.service)
        if live is not None and plan.live_deployment_id is not None and live.deployment_id != plan.live_deployment_id:
            return (
                f"version {live.version} went live (deployment {live.deployment_id}) after the plan was made "
                f"to replace {plan.from_version}"
            )
        return None

    async def resume_rollback(self, execution_id: str, *, on_event: EventCallback | None = None) -> RollbackExecution:
        """Continue an interrupted or failed execution from its first unfinished step.

        Raises:
            NotFoundError: no such execution.
            ConflictError: it is running in a live process.
        """
        row = self.journal.execution(execution_id)
        plan = self.journal.get_plan(row["plan_id"])
        if row["status"] == "completed":
            return replace(self._result(execution_id, plan, 0.0, []), replayed=True)
        return await self._run(plan, execution_id, on_event, resume=True)

    async def handle_rollback(
        self,
        deployment_id: str,
        strategy: str | RollbackStrategy | None = None,
        reason: str = "",
        *,
        to_version: str | None = None,
        on_event: EventCallback | None = None,
        force: bool = False,
    ) -> RollbackExecution:
        """Plan the rollback of a deployment and execute it (see `create_rollback_plan`, `execute_rollback`)."""
        plan = await self.acreate_rollback_plan(deployment_id, strategy, reason, to_version)
        return await self.execute_rollback(plan.plan_id, on_event=on_event, force=force)

    async def _run(
        self, plan: RollbackPlan, execution_id: str, on_event: EventCallback | None, *, resume: bool
    ) -> RollbackExecution:
        # The journal takes the environment's lock: it refuses while another rollback or a
        # deployment runs there (one write, enforced by the store: migration 0007).
        if resume:
            self.journal.claim(execution_id, plan.environment)
        else:
            self.journal.new_execution(plan, execution_id)
        env = self.orchestrator.get_environment(plan.environment)
        before = self.journal.steps(execution_id)
        skipped = [s["name"] for s in before if s["status"] == "done"]
        started = time.monotonic()
        owns_http = self._http is None
        http = self._http or httpx.AsyncClient(follow_redirects=False)
        ctx: ExecContext | None = None
        try:
            ops = OpsContext(
                environment=env,
                service=plan.service,
                target=self.orchestrator.target_for(env),
                router=self.orchestrator.router_for(env),
                clock=self.clock,
                http=http,
            )
            release = Release(
                service=plan.service,
                version=plan.to_version,
                deployment_id=plan.to_deployment_id,
                artifacts=tuple(plan.to_artifacts),
                env=dict(env.env),
            )
            ctx = ExecContext(ops, plan, release, self.journal, execution_id, on_event)

            async def forward(kind: str, message: str, data: dict[str, Any]) -> None:
                assert ctx is not None
                await ctx.event(kind, message, None, None, data)

            ops.emit = forward
            first = next((s["name"] for s in before if s["status"] != "done"), None)
            verb = "resuming" if resume else "starting"
            self.history.add_event(
                plan.deployment_id,
                "rollback_started",
                f"{verb} rollback {execution_id} ({plan.strategy.value}) to {plan.to_version}"
                + (f" at step {first!r}" if resume and first else ""),
                {"execution_id": execution_id, "plan_id": plan.plan_id, "resumed": resume},
            )
            await ctx.event(
                "rollback_started",
                f"{verb} {plan.strategy.value} rollback of {plan.service} in {plan.environment}: "
                f"{plan.from_version} -> {plan.to_version}"
                + (f" (skipping {len(skipped)} done steps)" if skipped else ""),
                None,
                "running",
                {"plan_id": plan.plan_id, "skipped": skipped},
            )
            status, failed, errors = await run_plan(ctx, before)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                self.journal.finish(
                    execution_id,
                    "failed",
                    time.monotonic() - started,
                    None,
                    f"interrupted: {type(exc).__name__}: {exc}",
                )
            raise
        finally:
            if owns_http:
                with anyio.CancelScope(shield=True):
                    await http.aclose()
        duration = time.monotonic() - started
        if status == "completed":
            # Only now, with every step (verify_health included) passed, is the old version live.
            self.history.mark_live(
                plan.environment, plan.service, plan.to_version, plan.to_deployment_id, plan.to_artifacts, "rolled_back"
            )
            message = f"rolled back to {plan.to_version}; it answers its health checks"
            rolled = self.history.get(plan.deployment_id)
            if rolled.status != DeploymentStatus.ROLLED_BACK:
                self.history.move(
                    plan.deployment_id,
                    DeploymentStatus.ROLLED_BACK,
                    reason=f"rolled back to {plan.to_version} by rollback {execution_id}"
                    + (f" ({plan.reason})" if plan.reason else ""),
                )
        else:
            message = f"rollback to {plan.to_version} failed: {errors[0]}; the live-version record is unchanged"
        self.journal.finish(execution_id, status, duration, failed, "\n".join(errors) or None)
        self.history.add_event(
            plan.deployment_id, "rollback_finished", message, {"execution_id": execution_id, "status": status}
        )
        await ctx.event("rollback_finished", message, failed, status, {"duration": duration})
        return self._result(execution_id, plan, duration, skipped)

    def _result(self, execution_id: str, plan: RollbackPlan, duration: float, skipped: list[str]) -> RollbackExecution:
        row: Row = self.journal.execution(execution_id)
        steps = [
            StepResult(
                s["seq"], s["name"], s["action"], s["status"], s["attempts"], s["duration"], s["detail"], s["result"]
            )
            for s in self.journal.steps(execution_id)
        ]
        status = row["status"]
        if status == "running" and not owner_alive(row):
            status = "failed"
        return RollbackExecution(
            execution_id=execution_id,
            plan_id=plan.plan_id,
            deployment_id=plan.deployment_id,
            environment=plan.environment,
            service=plan.service,
            strategy=plan.strategy.value,
            from_version=plan.from_version,
            to_version=plan.to_version,
            status=status,
            completed_steps=[s.name for s in steps if s.status == "done"],
            errors=[e for e in (row["error"] or "").split("\n") if e] if status != "completed" else [],
            duration=duration or float(row["duration"] or 0.0),
            steps=steps,
            failed_step=row["failed_step"],
            runs=int(row["runs"]),
            skipped_steps=skipped,
            finished_at=row["finished_at"],
        )

    def get_execution(self, execution_id: str) -> RollbackExecution:
        """Raises: NotFoundError: no such execution."""
        row = self.journal.execution(execution_id)
        return self._result(execution_id, self.journal.get_plan(row["plan_id"]), 0.0, [])

    async def confirm_manual(self, plan_id: str) -> bool:
        """After a person followed a MANUAL runbook: check the old version's health on the target
        and, when every instance passes, record it as live. Returns whether it did.

        Raises:
            NotFoundError: no such plan.
        """
        from engine.deploy.operations import verify_instances

        plan = self.journal.get_plan(plan_id)
        env = self.orchestrator.get_environment(plan.environment)
        target = self.orchestrator.target_for(env)
        slots = {s for step in plan.steps if step.action == "verify_health" for s in step.params["slots"]}
        running = [i for i in await target.instances(plan.service) if i.slot in slots and i.alive]
        if {i.slot for i in running} != slots or any(i.version != plan.to_version for i in running):
            return False
        async with httpx.AsyncClient() as http:
            ops = OpsContext(env, plan.service, target, None, self.clock, http)
            verdicts = await verify_instances(ops, running)
        if not verdicts or not all(v.healthy for v in verdicts):
            return False
        self.history.mark_live(
            plan.environment, plan.service, plan.to_version, plan.to_deployment_id, plan.to_artifacts, "rolled_back"
        )
        self.history.add_event(
            plan.deployment_id, "rollback_finished", f"manual rollback to {plan.to_version} confirmed", {}
        )
        return True

    async def aclose(self) -> None:
        if self._owns_orch:
            await self.orchestrator.aclose()
        if self._owns_store:
            self.store.close()


def handle_rollback(
    deployment_id: str,
    strategy: str | RollbackStrategy | None = None,
    reason: str = "",
    *,
    workspace_dir: str | os.PathLike[str] | None = None,
    to_version: str | None = None,
    on_event: EventCallback | None = None,
    force: bool = False,
) -> RollbackExecution:
    """Plan and execute the rollback of a deployment in a workspace (blocking).

    Raises:
        NotFoundError, InputError, ConflictError: as `RollbackManager.handle_rollback`.
    """

    async def work() -> RollbackExecution:
        manager = RollbackManager(workspace_dir)
        try:
            return await manager.handle_rollback(
                deployment_id, strategy, reason, to_version=to_version, on_event=on_event, force=force
            )
        finally:
            await manager.aclose()

    return blocking(work)
