"""Traffic routers: who gets a service's traffic. The contract is in `engine.deploy.routers.base`."""

from engine.deploy.routers.base import ROUTERS, Backend, Router, RouterConfig

__all__ = ["ROUTERS", "Backend", "Router", "RouterConfig"]
