"""Offline evaluation of pretrained backbones: linear evaluation and dataset features."""

from rotaux.eval.features import extract_features, labeled_indices
from rotaux.eval.linear import (
    LINEAR_EVAL_VIEW,
    LinearEval,
    classifier_accuracy,
    linear_eval_on_features,
    train_linear_classifier,
)

__all__ = [
    "LINEAR_EVAL_VIEW",
    "LinearEval",
    "classifier_accuracy",
    "extract_features",
    "labeled_indices",
    "linear_eval_on_features",
    "train_linear_classifier",
]
