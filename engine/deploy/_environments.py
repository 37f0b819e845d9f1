"""The environments a process deploys to, and each one's target and router.

Environments are cached by name over the store's copies: one registered by any process (a
deployment file loaded by the server, the CLI) can be deployed to by name from any other.
A target or router is built from its registry (`TARGETS`, `ROUTERS`) on first use, unless
one was given for that environment (tests pass fakes); re-registering an environment drops
what was built for it.
"""

from __future__ import annotations

from engine.deploy.config import Environment, implied_target, parse_target_config
from engine.deploy.history import EnvironmentStore
from engine.deploy.routers.base import ROUTERS, Router
from engine.deploy.targets.base import TARGETS, Target, TargetContext
from engine.errors import InputError, NotFoundError
from engine.settings import Settings
from engine.store.base import Store

__all__ = ["Environments"]


class Environments:
    def __init__(
        self, store: Store, settings: Settings, *, targets: dict[str, Target] | None = None,
        routers: dict[str, Router | None] | None = None,
    ) -> None:
        self.settings = settings
        self.saved = EnvironmentStore(store)
        self.by_name: dict[str, Environment] = {}
        self._targets: dict[str, Target] = dict(targets or {})
        self._routers: dict[str, Router | None] = dict(routers or {})
        self._injected = set(self._targets) | set(self._routers)

    def register(self, environment: Environment, *, source_path: str | None = None) -> Environment:
        """Add (or replace) an environment; it is also saved so other processes can use it by name."""
        self.by_name[environment.name] = environment
        if environment.name not in self._injected:
            self._targets.pop(environment.name, None)  # re-registered: build its target afresh
            self._routers.pop(environment.name, None)
        self.saved.save(environment.name, environment.model_dump(mode="json"), source_path)
        return environment

    def get(self, name: str) -> Environment:
        """Raises: NotFoundError: no environment of that name here or in the store."""
        env = self.by_name.get(name)
        if env is None:
            spec = self.saved.load(name)
            if spec is None:
                known = sorted(set(self.by_name) | set(self.saved.names()))
                raise NotFoundError(f"no environment {name!r} (known: {', '.join(known) or 'none'})")
            env = Environment.model_validate(spec)
            self.by_name[name] = env
        return env

    def _context(self, env: Environment) -> TargetContext:
        return TargetContext(
            environment=env.name,
            state_dir=self.settings.workspace / "deploy" / env.name,
            host=env.host,
            port=env.port,
            user=env.user,
            docker_registry=env.docker_registry or self.settings.ARTIFACT_REGISTRY,
        )

    def target_for(self, env: Environment) -> Target:
        """The environment's target (built from the registry on first use).

        Raises:
            InputError: the environment names no usable target.
        """
        if env.name not in self._targets:
            config = env.target or implied_target(env)
            if config is None:
                try:
                    config = parse_target_config({"kind": self.settings.DEPLOY_TARGET})
                except InputError as exc:
                    raise InputError(
                        f"environment {env.name!r} has no `target:` and the default DEPLOY_TARGET="
                        f"{self.settings.DEPLOY_TARGET} needs settings: {exc}"
                    ) from None
            self._targets[env.name] = TARGETS[config.kind](config, self._context(env))
        return self._targets[env.name]

    def router_for(self, env: Environment) -> Router | None:
        if env.name not in self._routers:
            self._routers[env.name] = (
                ROUTERS[env.router.kind](env.router, self._context(env)) if env.router is not None else None
            )
        return self._routers[env.name]

    async def aclose(self) -> None:
        """Close every target and router built or given."""
        for target in self._targets.values():
            await target.close()
        for router in self._routers.values():
            if router is not None:
                await router.close()
