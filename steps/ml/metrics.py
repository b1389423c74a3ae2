"""Classification metrics computed the same way for challenger and champion."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Return ROC AUC, PR AUC (average precision), log loss, Brier score and accuracy at 0.5.

    Raises:
        ValueError: when ``labels`` holds a single class (AUCs are undefined).
    """
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    if np.unique(labels).size < 2:
        raise ValueError("held-out labels contain a single class; AUC is undefined")
    clipped = np.clip(probability, 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(labels, probability)),
        "pr_auc": float(average_precision_score(labels, probability)),
        "log_loss": float(log_loss(labels, clipped)),
        "brier": float(brier_score_loss(labels, probability)),
        "accuracy": float(np.mean((probability >= 0.5) == labels)),
    }
