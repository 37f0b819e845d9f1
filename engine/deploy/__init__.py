"""Deployments: targets, routers, strategies, health checks and the orchestrator."""
