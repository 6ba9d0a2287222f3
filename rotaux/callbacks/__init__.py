"""Callbacks that evaluate the representation while it trains."""

from rotaux.callbacks.clock import TrainingClock
from rotaux.callbacks.divergence import DivergenceGuard
from rotaux.callbacks.knn import KNNMonitor
from rotaux.callbacks.linear_probe import OnlineLinearProbe

__all__ = ["DivergenceGuard", "KNNMonitor", "OnlineLinearProbe", "TrainingClock"]
