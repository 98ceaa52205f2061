"""Shared oracle for the reference tests: central finite differences in float64."""

from __future__ import annotations

import numpy as np


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d x for a scalar function f of array x, one central difference per element.

    Independent of any backward pass we wrote, which is what makes it an oracle.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        up = float(f(x))
        x[i] = saved - eps
        down = float(f(x))
        x[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad
