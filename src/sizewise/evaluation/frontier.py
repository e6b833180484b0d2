"""Moved to :mod:`sizewise.evaluation.choose.frontier` (one home for the offline choose tool); kept for old imports."""

from sizewise.evaluation.choose.frontier import pareto as pareto
from sizewise.evaluation.choose.frontier import plot_frontier as plot_frontier
from sizewise.evaluation.choose.frontier import render_markdown as render_markdown
