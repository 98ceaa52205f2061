"""Training time from FLOPs, hardware and utilisation, and utilisation from a measured throughput.

    seconds = total FLOPs / (GPUs × peak FLOP/s × MFU)
    MFU     = tokens/s × model FLOPs per token / (GPUs × peak FLOP/s)

MFU counts only the model's FLOPs (3 × forward per token), not recomputation; the FLOPs a GPU
actually executes per second, recomputation included, is what Narayanan et al. 2021 report as
"achieved teraFLOP/s per GPU" (hardware FLOPs utilisation when divided by the peak).
"""

from __future__ import annotations

import math

SECONDS_PER_DAY = 86_400


def training_seconds(total_flops: float, n_gpus: int, flops_per_gpu: float) -> float:
    """Wall time when every GPU sustains `flops_per_gpu` (= peak × utilisation)."""
    return total_flops / (n_gpus * flops_per_gpu)


def training_days(total_flops: float, n_gpus: int, peak: float, mfu: float) -> float:
    return training_seconds(total_flops, n_gpus, peak * mfu) / SECONDS_PER_DAY


def gpus_for_days(total_flops: float, days: float, peak: float, mfu: float) -> int:
    """Fewest GPUs that finish within `days` (GPU × days is what the budget really fixes)."""
    return math.ceil(total_flops / (days * SECONDS_PER_DAY * peak * mfu))


def mfu(tokens_per_second: float, flops_per_token: float, n_gpus: int, peak: float) -> float:
    return tokens_per_second * flops_per_token / (n_gpus * peak)


def gpu_hours(total_flops: float, peak: float, mfu: float) -> float:
    return total_flops / (peak * mfu) / 3600
