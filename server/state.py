"""AppState: what every tool call needs, built once per server by `server.app`.

The gate, the tools, the resources and the transports import it; it imports none of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from engine.settings import Settings
from engine.store import Store
from server._limits import Usage
from server.audit import AuditLog
from server.tokens import TokenStore
from server.trust import Level, PolicyToken, TrustPolicy

if TYPE_CHECKING:
    # Loaded on first use (`AppState.manager`), not at start: the pipeline engine is most of
    # a cold start's cost, and a server that only reads the store never needs it.
    from engine.pipeline.manager import PipelineManager
    from engine.store.notify import Hub
    from server.oauth import OAuthVerifier

__all__ = ["AppState"]


@dataclass
class AppState:
    """What every tool call needs; built once per server."""

    settings: Settings
    store: Store
    policy: TrustPolicy
    policy_tokens: dict[str, PolicyToken]
    transport: str                   # stdio | sse | http | memory
    stdio_level: Level
    tokens: TokenStore
    audit: AuditLog
    background: TaskGroup | None = None
    usage: Usage = field(default_factory=Usage)
    _oauth: OAuthVerifier | None = None
    _manager: PipelineManager | None = None
    _changes: Hub | None = None
    _changes_group: TaskGroup | None = None
    _recovered: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def recover(self) -> None:
        """Once per server, at start-up: mark runs whose runner process is gone `interrupted` (killing
        the job process groups they left) and close deployments whose deploying process is gone
        (failure / rollback_failed). A process that still runs keeps its work: only the dead is closed.
        """
        with self._lock:
            if self._recovered:
                return
            self._recovered = True
        # Imported here for the cold start (see above).
        from engine.deploy.history import DeploymentHistory
        from engine.pipeline._recovery import recover_interrupted

        recover_interrupted(self.store)
        DeploymentHistory(self.store).recover_interrupted()

    @property
    def oauth(self) -> OAuthVerifier | None:
        """The JWT verifier when the policy configures OAuth (`http.oauth`), built on first use."""
        settings = self.policy.http.oauth
        if settings is None:
            return None
        with self._lock:
            if self._oauth is None:
                from server.oauth import OAuthVerifier

                self._oauth = OAuthVerifier(settings)
            return self._oauth

    @property
    def manager(self) -> PipelineManager:
        """The pipeline engine, built on first use."""
        with self._lock:
            if self._manager is None:
                from engine._confined import config_roots
                from engine.pipeline.manager import PipelineManager

                # Every pipeline file a caller reaches, by path or by a registered name, stays under the
                # operator's config roots.
                self._manager = PipelineManager(workspace_dir=self.settings.workspace, settings=self.settings,
                                                store=self.store, config_roots=config_roots(self.settings))
            return self._manager

    @property
    def run_changes(self) -> Hub:
        """Wakes the waiters of a run when it changes, from any process (one listening connection
        per server, on PostgreSQL; on SQLite, waiters poll). Bound to the background task group."""
        with self._lock:
            if self._changes is None or self._changes_group is not self.background:
                from engine.store.notify import Hub

                self._changes = Hub(self.store, "runs", self.background)
                self._changes_group = self.background
            return self._changes
