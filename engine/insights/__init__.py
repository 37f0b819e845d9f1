"""Insights: performance analysis, suggestions, health and reports computed from recorded runs.

Nothing is assumed or filled in: a pipeline with no runs is `unknown`, every figure comes
from the store, and every measured value carries its unit.
"""

from engine.insights.charts import render_report
from engine.insights.monitor import PipelineMonitor
from engine.insights.optimizer import PipelineOptimizer, optimize_pipeline_performance

__all__ = ["PipelineMonitor", "PipelineOptimizer", "optimize_pipeline_performance", "render_report"]
