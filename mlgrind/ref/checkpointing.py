"""Seed "how would you shard the model? Gradient Checkpointing": trade FLOPs for activation memory.

A stack of n MLP layers (`mlp.py`). Without checkpointing, forward keeps every layer's input x_BD
and pre-activation h_BF for backward: n (B·D + B·F) values. With a checkpoint every k layers,
forward keeps only the input of layers 0, k, 2k, ...; backward re-runs each segment's forward from
its checkpoint just before differentiating it. Memory kept between forward and backward drops to
ceil(n / k) · B·D; the price is one extra forward pass of FLOPs (every segment is re-run once).
While a segment is differentiated its k layers' activations are live again, so the peak is
about (n / k + k) · B·D + k · B·F, smallest near k = sqrt(n · D / (D + F)): the sqrt(n) rule of
Chen et al. 2016 (arXiv 1604.06174) once a layer's activations count as one unit.

Bytes are measured from the arrays actually held (`.nbytes`), recompute FLOPs from `count_flops`.
"""

from __future__ import annotations

import math

import numpy as np

from mlgrind.ref import mlp


def held_bytes(arrays) -> int:
    """Bytes of distinct arrays (a checkpoint that is also a layer's saved input counts once)."""
    return sum({id(a): a.nbytes for a in arrays}.values())


def activations(saved_layers) -> list[np.ndarray]:
    """The activations in `mlp_forward`'s saved tuples: x_BD and h_BF (weights are not)."""
    return [a for x_BD, _, _, h_BF in saved_layers for a in (x_BD, h_BF)]


def stack_forward(x_BD, w_in_DF_layers, w_out_FD_layers):
    saved_layers = []
    for w_in_DF, w_out_FD in zip(w_in_DF_layers, w_out_FD_layers):
        x_BD, saved = mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
        saved_layers.append(saved)
    return x_BD, saved_layers


def stack_backward(d_y_BD, saved_layers):
    d_w_in_DF_layers, d_w_out_FD_layers = [], []
    for saved in reversed(saved_layers):
        d_y_BD, d_w_in_DF, d_w_out_FD = mlp.mlp_backward(d_y_BD, saved)
        d_w_in_DF_layers.insert(0, d_w_in_DF)
        d_w_out_FD_layers.insert(0, d_w_out_FD)
    return d_y_BD, d_w_in_DF_layers, d_w_out_FD_layers


def segments(n_layers: int, every: int) -> list[range]:
    if every < 1:
        raise ValueError(f"checkpoint every k >= 1 layers, not {every}")
    return [range(start, min(start + every, n_layers)) for start in range(0, n_layers, every)]


def checkpointed_forward(x_BD, w_in_DF_layers, w_out_FD_layers, every: int):
    """Forward keeping only each segment's input; everything else is dropped as it goes."""
    checkpoints = []
    for seg in segments(len(w_in_DF_layers), every):
        checkpoints.append(x_BD)
        for layer in seg:
            x_BD, _ = mlp.mlp_forward(x_BD, w_in_DF_layers[layer], w_out_FD_layers[layer])
    return x_BD, checkpoints


def checkpointed_backward(d_y_BD, checkpoints, w_in_DF_layers, w_out_FD_layers, every: int):
    """Last segment first: recompute its forward from its checkpoint, backprop, drop it.
    Also returns the peak activation bytes held at any point of the backward pass."""
    n = len(w_in_DF_layers)
    d_w_in_DF_layers, d_w_out_FD_layers = [None] * n, [None] * n
    peak = 0
    for seg in reversed(segments(n, every)):
        ws = slice(seg.start, seg.stop)
        _, saved_layers = stack_forward(checkpoints[-1], w_in_DF_layers[ws], w_out_FD_layers[ws])
        peak = max(peak, held_bytes(checkpoints + activations(saved_layers)))
        d_y_BD, d_w_in_DF_layers[ws], d_w_out_FD_layers[ws] = stack_backward(d_y_BD, saved_layers)
        checkpoints = checkpoints[:-1]
    return d_y_BD, d_w_in_DF_layers, d_w_out_FD_layers, peak


def stack_activation_bytes(n_layers: int, B: int, D: int, F: int, itemsize: int) -> int:
    """No checkpointing: every layer keeps its input x_BD and its pre-activation h_BF."""
    return n_layers * (B * D + B * F) * itemsize


def checkpoint_bytes(n_layers: int, every: int, B: int, D: int, itemsize: int) -> int:
    """Kept between forward and backward: one x_BD per segment."""
    return math.ceil(n_layers / every) * B * D * itemsize


def checkpoint_peak_bytes(n_layers: int, every: int, B: int, D: int, F: int, itemsize: int) -> int:
    """Worst segment j: checkpoints 0..j plus its recomputed layers (the first input is
    checkpoint j itself, so a segment of length k adds k - 1 inputs and k h_BF's)."""
    return itemsize * max(
        (j + 1 + len(seg) - 1) * B * D + len(seg) * B * F
        for j, seg in enumerate(segments(n_layers, every))
    )


def recompute_flops(n_layers: int, B: int, D: int, F: int) -> int:
    """Every segment's forward is re-run once: one forward pass of the whole stack."""
    return n_layers * mlp.mlp_flops(B, D, F)
