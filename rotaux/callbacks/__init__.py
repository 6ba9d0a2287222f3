"""Callbacks: online evaluation of the representation, training clock, divergence guard and
backbone compilation."""

from rotaux.callbacks.clock import TrainingClock
from rotaux.callbacks.compile import CompileBackbones
from rotaux.callbacks.divergence import DivergenceGuard
from rotaux.callbacks.knn import KNNMonitor
from rotaux.callbacks.linear_probe import OnlineLinearProbe

__all__ = [
    "CompileBackbones",
    "DivergenceGuard",
    "KNNMonitor",
    "OnlineLinearProbe",
    "TrainingClock",
]
