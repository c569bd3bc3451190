"""Modal assignment, its classification error matrix and the BCH weights (formulas in
:mod:`pymemoe._relate`)."""
from __future__ import annotations

import numpy as np

__all__ = ["modal_assignment", "classification_error", "bch_weights", "modal_weights"]


def modal_assignment(tau: np.ndarray) -> np.ndarray:
    """The modal expert of each subject, 0-based (N,), ties to the lower expert.

    Examples
    --------
    >>> modal_assignment(np.array([[0.2, 0.8], [0.5, 0.5]])).tolist()
    [1, 0]
    """
    return np.asarray(tau).argmax(axis=1)


def classification_error(tau: np.ndarray, assigned: np.ndarray,
                         weights: np.ndarray | None = None) -> np.ndarray:
    """D (K, K) with D_kl = P(assigned l | class k) = sum_i tau_ik [s_i = l] / sum_i tau_ik
    (each subject's terms times its weight when ``weights`` are given).

    Examples
    --------
    >>> tau = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    >>> classification_error(tau, modal_assignment(tau)).round(3).tolist()
    [[0.85, 0.15], [0.3, 0.7]]
    """
    K = tau.shape[1]
    one_hot = np.eye(K)[assigned]
    if weights is not None:
        tau = tau * np.asarray(weights, dtype=float)[:, None]
    return (tau.T @ one_hot) / tau.sum(axis=0)[:, None]


def modal_weights(assigned: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot weights (N, K) of the modal assignment."""
    return np.eye(n_classes)[assigned]


def bch_weights(error: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """BCH weights (N, K): w_ik = (D^-1)_{s_i k}. Rows sum to 1; entries may be negative.

    Raises a ValueError when D is singular (an expert to which no subject is assigned).

    Examples
    --------
    >>> D = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> bch_weights(D, np.array([0, 1])).round(4).tolist()
    [[1.1429, -0.1429], [-0.2857, 1.2857]]
    """
    try:
        inverse = np.linalg.inv(error)
    except np.linalg.LinAlgError:
        inverse = None
    if inverse is None or not np.all(np.isfinite(inverse)) or np.linalg.cond(error) > 1e12:
        raise ValueError("the classification error matrix is singular (an expert to which no "
                         "subject is assigned): BCH weights do not exist; use method='ml' or "
                         "a model with fewer experts")
    return inverse[assigned]
