"""Seed "ROPE and positional embeddings in general": rotary position embeddings.

RoFormer (Su et al. 2021, arXiv 2104.09864). Channels 2i and 2i+1 of every query and key head
form a pair that is rotated by the angle position · θ^(−2i/K). Rotating q by angle a and k by
angle b leaves q·k rotated by a − b, so the attention score depends only on the relative
position, and nothing positional is added to the residual stream. Low pairs spin fast (local
order), high pairs slowly (long range), like the sinusoids of the original Transformer.
"""

from __future__ import annotations

import numpy as np


def rope_angles(positions_L: np.ndarray, K: int, theta: float = 10000.0) -> np.ndarray:
    """Angle of each (position, channel pair): shape (L, K / 2)."""
    if K % 2:
        raise ValueError(f"RoPE rotates channel pairs, so the head size must be even, not {K}")
    frequencies = theta ** (-np.arange(0, K, 2) / K)
    return np.asarray(positions_L, dtype=float)[:, None] * frequencies[None, :]


def rope(x_BLHK: np.ndarray, positions_L: np.ndarray, theta: float = 10000.0) -> np.ndarray:
    """Rotate each channel pair of x_BLHK by its position's angle (applied to q and to k)."""
    angles = rope_angles(positions_L, x_BLHK.shape[-1], theta)[None, :, None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    even, odd = x_BLHK[..., 0::2], x_BLHK[..., 1::2]
    y_BLHK = np.empty_like(x_BLHK)
    y_BLHK[..., 0::2] = even * cos - odd * sin
    y_BLHK[..., 1::2] = even * sin + odd * cos
    return y_BLHK


def rope_backward(d_y_BLHK: np.ndarray, positions_L: np.ndarray, theta: float = 10000.0):
    """A rotation's transpose is its inverse: the gradient is rotated back by −position."""
    return rope(d_y_BLHK, -np.asarray(positions_L), theta)
