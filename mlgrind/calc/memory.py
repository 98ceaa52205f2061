"""Memory per rank in training: model states (params, grads, optimizer) and activations.

Model states (Rajbhandari et al. 2020, ZeRO, section 3.1): Ψ parameters cost, per parameter,
    mixed   2 (bf16 params) + 2 (bf16 grads) + 12 (fp32 master copy, Adam m and v)  = 16 bytes
    fp32    4 + 4 + 8 (m, v)                                                         = 16 bytes
    bf16    2 + 2 + 4 (m, v in bf16, no master copy)                                 =  8 bytes
ZeRO shards them over the N_d data-parallel ranks: stage 1 the optimizer states, stage 2 also
the gradients, stage 3 also the parameters (= FSDP full sharding).

Activations per transformer layer, in bytes, for micro-batch b, sequence s, hidden h, a heads,
tensor-parallel size t (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", arXiv 2205.05198, Table 2; 16-bit activations, 1-byte dropout masks):

    no parallelism                        s·b·h · (34 + 5·a·s/h)
    tensor parallel                       s·b·h · (10 + 24/t + 5·a·s/(h·t))
    tensor + sequence parallel            s·b·h/t · (34 + 5·a·s/h)
    tensor parallel + selective recompute s·b·h · (10 + 24/t)
    tensor + sequence + selective         s·b·h/t · 34
    full recompute (keep layer inputs)    2·s·b·h (/t with sequence parallel)

The 5·a·s/h term is the attention scores, softmax and its dropout mask (a·s² per sequence);
selective recomputation drops exactly that. The paper's layer is GPT's (MHA, MLP 4h, dropout);
for SwiGLU, GQA or MoE layers the formula is an estimate. Context parallelism splits s over
its ranks; a 1F1B pipeline stage holds up to p micro-batches in flight (stage 0 holds p), so
the first stage stores p × (layers/p) = all layers' activations of one micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError

PRECISIONS = {"mixed": (2, 2, 12), "fp32": (4, 4, 8), "bf16": (2, 2, 4)}
RECOMPUTE = ("none", "selective", "full")


def zero_state_bytes(n_params: float, dp: int, stage: int, precision: str = "mixed") -> dict[str, float]:
    """Model-state bytes one data-parallel rank holds (ZeRO paper, Figure 1 and Table 1)."""
    if stage not in (0, 1, 2, 3):
        raise SpecError(f"ZeRO stage must be 0, 1, 2 or 3, not {stage}")
    p, g, o = PRECISIONS[precision]
    return {
        "params": p * n_params / (dp if stage >= 3 else 1),
        "grads": g * n_params / (dp if stage >= 2 else 1),
        "optimizer": o * n_params / (dp if stage >= 1 else 1),
    }


def activation_bytes_per_layer(s: int, b: int, h: int, a: int, t: int = 1, sp: bool = False,
                               recompute: str = "none") -> float:
    """Korthikanti et al. 2022, Table 2 (see module docstring)."""
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sp else 1)
    scores = 0 if recompute == "selective" else 5 * a * s / h
    if sp:
        return sbh / t * (34 + scores)
    return sbh * (10 + 24 / t + scores / t)


@dataclass(frozen=True)
class Parallel:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1

    @property
    def gpus(self) -> int:
        """Expert parallelism reuses the data- and context-parallel ranks (as in Megatron)."""
        return self.dp * self.tp * self.pp * self.cp

    def check(self, spec: ModelSpec) -> None:
        if (self.dp * self.cp) % self.ep:
            raise SpecError(f"expert parallel {self.ep} must divide data × context parallel "
                            f"{self.dp * self.cp}")
        if spec.E and spec.E % self.ep:
            raise SpecError(f"{spec.E} experts cannot be split over {self.ep} expert-parallel ranks")
        if spec.H % self.tp:
            raise SpecError(f"{spec.H} heads cannot be split over {self.tp} tensor-parallel ranks")
        if spec.n_layers % self.pp:
            raise SpecError(f"{spec.n_layers} layers cannot be split into {self.pp} pipeline stages")


@dataclass(frozen=True)
class RankMemory:
    params: float
    grads: float
    optimizer: float
    activations: float
    params_per_rank: float  # parameters this rank computes with (before ZeRO sharding)

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


def memory_per_rank(spec: ModelSpec, par: Parallel, zero: int = 0, micro_batch: int = 1,
                    seq_len: int = 2048, recompute: str = "none", sp: bool = False,
                    precision: str = "mixed", microbatches: int = 1) -> RankMemory:
    """Bytes one rank holds at the peak of a training step.

    Dense parameters are split over tensor × pipeline ranks, routed experts over expert ×
    pipeline ranks (experts are not tensor-split here); ZeRO then shards each group's states
    over the ranks holding the same copy: data × context parallel for dense parameters,
    data × context / expert parallel for experts. Embeddings are spread like any layer.
    """
    par.check(spec)
    if recompute not in RECOMPUTE:
        raise SpecError(f"recompute must be one of {', '.join(RECOMPUTE)}, not {recompute!r}")
    if precision not in PRECISIONS:
        raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if seq_len % par.cp:
        raise SpecError(f"sequence {seq_len} cannot be split over {par.cp} context-parallel ranks")
    c = count(spec)
    dense = (c.total - c.experts) / (par.tp * par.pp)
    experts = c.experts / (par.ep * par.pp)
    replicas = par.dp * par.cp
    states = {k: v1 + v2 for (k, v1), v2 in zip(
        zero_state_bytes(dense, replicas, zero, precision).items(),
        zero_state_bytes(experts, replicas // par.ep, zero, precision).values(), strict=True)}
    in_flight = min(par.pp, microbatches)
    per_layer = activation_bytes_per_layer(seq_len // par.cp, micro_batch, spec.D, spec.H,
                                           par.tp, sp, recompute)
    activations = spec.n_layers // par.pp * in_flight * per_layer
    return RankMemory(**states, activations=activations, params_per_rank=dense + experts)
