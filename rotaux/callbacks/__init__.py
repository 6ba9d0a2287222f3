"""Callbacks: online evaluation of the representation, collapse monitor, embedding pictures,
training clock, divergence guard and backbone compilation."""

from rotaux.callbacks.clock import TrainingClock
from rotaux.callbacks.collapse import CollapseMonitor
from rotaux.callbacks.compile import CompileBackbones
from rotaux.callbacks.divergence import DivergenceGuard
from rotaux.callbacks.embedding_plot import EmbeddingPlot
from rotaux.callbacks.knn import KNNMonitor
from rotaux.callbacks.linear_probe import OnlineLinearProbe

__all__ = [
    "CollapseMonitor",
    "CompileBackbones",
    "DivergenceGuard",
    "EmbeddingPlot",
    "KNNMonitor",
    "OnlineLinearProbe",
    "TrainingClock",
]
