"""Memory per rank in training: model states (params, grads, optimizer) and activations.

Model states (Rajbhandari et al. 2020, ZeRO, section 3.1) cost, per parameter, by precision
recipe (`RECIPES`):

    mixed              2 (bf16 params) + 2 (bf16 grads) + 4 (fp32 master) + 8 (fp32 Adam m, v) = 16
    bf16-fp32-moments  2 + 2 + 8 (fp32 m, v), no master copy                                  = 12
    bf16               2 + 2 + 4 (bf16 m, v), no master copy                                  =  8
    fp32               4 + 4 + 8 (m, v)                                                       = 16
    adam-8bit          2 + 2 + 4 (fp32 master) + 2 (8-bit m, v; Dettmers et al. 2022)         = 10

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

The 5·a·s/h term is the attention scores, softmax and its dropout mask (a·s² per sequence),
which an eager attention kernel keeps for backward; selective recomputation drops exactly that.
So does FlashAttention (`kernel="flash"`, Dao et al. 2022) by design: it never writes the
scores to HBM, keeps only the softmax statistics (a·s fp32 numbers per sequence, not counted)
and recomputes the scores in its backward. The paper's table is the eager kernel (the default). Outside the layers (section 4.3): the embeddings'
dropout mask s·b·h·p/t, and with no pipeline the final norm's and output projection's inputs and
the fp32 logits, 4·s·b·h/t·(1 + V/h). Recomputation also holds, while backward runs, what it
recomputes: one layer's attention core (selective) or one segment of layers (full, checkpoint
every k layers). The paper's layer is GPT's (MHA, MLP 4h, dropout); for SwiGLU, GQA or MoE
layers the formula is an estimate. Context parallelism splits s over its ranks; a 1F1B pipeline
stage holds up to p micro-batches in flight (stage 0 holds p), so the first stage stores
p × (layers/p) = all layers' activations of one micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.hardware import Hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, count_text, gb, num, size


@dataclass(frozen=True)
class Recipe:
    """Bytes per parameter of a precision recipe for Adam training."""

    params: float
    grads: float
    master: float  # the fp32 copy the optimizer updates (0: it updates the parameters themselves)
    moments: float  # Adam's m and v together
    text: str

    @property
    def optimizer(self) -> float:
        return self.master + self.moments


RECIPES = {
    "mixed": Recipe(2, 2, 4, 8, "mixed precision: bf16 params 2 B + bf16 grads 2 B + fp32 master "
                    "4 B + fp32 Adam m, v 8 B = 16 B (ZeRO's mixed-precision Adam, K = 12)"),
    "bf16-fp32-moments": Recipe(2, 2, 0, 8, "bf16 params 2 B + bf16 grads 2 B + fp32 Adam m, v "
                                "8 B, no master copy = 12 B"),
    "bf16": Recipe(2, 2, 0, 4, "pure bf16: params 2 B + grads 2 B + Adam m, v 4 B, no master "
                   "copy = 8 B"),
    "fp32": Recipe(4, 4, 0, 8, "fp32: params 4 B + grads 4 B + Adam m, v 8 B = 16 B"),
    "adam-8bit": Recipe(2, 2, 4, 2, "8-bit Adam: bf16 params 2 B + bf16 grads 2 B + fp32 master "
                        "4 B + m, v 1 B each (block-wise quantized, Dettmers et al. 2022; the "
                        "per-block scales are left out) = 10 B"),
}
PRECISIONS = {name: (r.params, r.grads, r.optimizer) for name, r in RECIPES.items()}
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


KERNELS = ("eager", "flash")


def activation_bytes_per_layer(s: int, b: int, h: int, a: int, t: int = 1, sp: bool = False,
                               recompute: str = "none", kernel: str = "eager") -> float:
    """Korthikanti et al. 2022, Table 2 (see module docstring)."""
    if kernel not in KERNELS:
        raise SpecError(f"attention kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sp else 1)
    scores = 0 if recompute == "selective" or kernel == "flash" else 5 * a * s / h
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
class Activations:
    """Activation bytes of the first pipeline stage (the one holding most) at its peak."""

    per_layer: float  # one layer, one micro-batch, as kept for backward (Table 2)
    in_flight: int  # micro-batches whose activations the stage holds at once
    layers: float  # what the stage's layers keep, every micro-batch in flight
    recomputed: float  # live only while backward recomputes one segment or attention core
    embedding: float  # the embeddings' dropout mask, every micro-batch in flight
    output: float  # final norm and output-projection inputs, fp32 logits (no pipeline only)

    @property
    def total(self) -> float:
        return self.layers + self.recomputed + self.embedding + self.output


@dataclass(frozen=True)
class RankMemory:
    params: float
    grads: float
    optimizer: float
    activations: float
    params_per_rank: float  # parameters this rank computes with (before ZeRO sharding)
    activation_parts: Activations

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


def checkpointed(layers: int, every: int, checkpoint: float, layer: float,
                 in_flight: int = 1) -> tuple[float, float]:
    """A checkpoint every `every` layers: (bytes kept between forward and backward, bytes live
    again while backward recomputes one segment). Kept: each segment's input, for every
    micro-batch in flight; live: the segment's `every` layers' activations, less its first
    input, which is the checkpoint already counted. `every` divides `layers`."""
    return layers // every * in_flight * checkpoint, every * layer - checkpoint


def activations(spec: ModelSpec, par: Parallel, micro_batch: int = 1, seq_len: int = 2048,
                recompute: str = "none", sp: bool = False, microbatches: int = 1,
                recompute_every: int = 1, kernel: str = "eager") -> Activations:
    """Korthikanti et al. 2022 for the first pipeline stage, plus what recomputation holds."""
    if recompute_every != 1 and recompute != "full":
        raise SpecError("checkpointing every k layers is full recomputation: use it with recompute 'full'")
    layers = spec.n_layers // par.pp
    if layers % recompute_every:
        raise SpecError(f"a checkpoint every {recompute_every} layers does not divide the {layers} "
                        f"layers of a pipeline stage")
    s, b, h, t = seq_len // par.cp, micro_batch, spec.D, par.tp
    in_flight = min(par.pp, microbatches)
    kept = activation_bytes_per_layer(s, b, h, spec.H, t, sp, recompute, kernel)
    split = t if sp else 1
    if recompute == "full":
        full = activation_bytes_per_layer(s, b, h, spec.H, t, sp, kernel=kernel)
        stored, held = checkpointed(layers, recompute_every, kept, full, in_flight)
    else:
        stored = layers * in_flight * kept
        held = 5 * spec.H * s * s * b / t if recompute == "selective" and kernel == "eager" else 0
    output = (4 * s * b * h / split + 4 * s * b * spec.V / t) if par.pp == 1 else 0
    return Activations(kept, in_flight, stored, held, s * b * h * in_flight / split, output)


def memory_per_rank(spec: ModelSpec, par: Parallel, zero: int = 0, micro_batch: int = 1,
                    seq_len: int = 2048, recompute: str = "none", sp: bool = False,
                    precision: str = "mixed", microbatches: int = 1,
                    recompute_every: int = 1, kernel: str = "eager") -> RankMemory:
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
    acts = activations(spec, par, micro_batch, seq_len, recompute, sp, microbatches, recompute_every, kernel)
    return RankMemory(**states, activations=acts.total, params_per_rank=dense + experts,
                      activation_parts=acts)


# ----------------------------------------------------------------------------- the working

ZERO_SHARDS = {"params": 3, "grads": 2, "optimizer": 1}  # the lowest ZeRO stage sharding each
NOT_COUNTED = ("not counted: ZeRO-3's gathered parameters and communication buffers, temporary "
               "tensors of backward, the CUDA context, allocator fragmentation (the memory left "
               "unused by --usable-memory is for them)")


def _recipe_bytes(recipe: Recipe, kind: str) -> float:
    return {"params": recipe.params, "grads": recipe.grads, "optimizer": recipe.optimizer}[kind]


def _sharding(kind: str, zero: int, replicas: int) -> str:
    what = {"params": "parameters", "grads": "gradients", "optimizer": "optimizer states"}[kind]
    if zero >= ZERO_SHARDS[kind]:
        return f"ZeRO-{zero} shards the {what} over the {replicas:,} ranks holding a replica (dp × cp)"
    return f"ZeRO-{zero}: the {what} are not sharded (from stage {ZERO_SHARDS[kind]} they are)"


def _kept_formula(s: int, b: int, h: int, a: int, t: int, sp: bool, recompute: str, kernel: str) -> str:
    """The Table 2 row used, symbolically and with its numbers."""
    sbh, n = "s·b·h", f"{s:,}·{b}·{h:,}"
    if recompute == "full":
        return f"2·{sbh}/t = 2·{n}/{t}" if sp else f"2·{sbh} = 2·{n}"
    dropped = recompute == "selective" or kernel == "flash"
    scores = "" if dropped else " + 5·a·s/h"
    scores_n = "" if dropped else f" + 5·{a}·{s:,}/{h:,}"
    if sp:
        return f"{sbh}/t·(34{scores}) = {n}/{t}·(34{scores_n})"
    if t == 1:
        return f"{sbh}·(34{scores}) = {n}·(34{scores_n})"
    scores = scores and " + 5·a·s/(h·t)"
    scores_n = scores_n and f" + 5·{a}·{s:,}/({h:,}·{t})"
    return f"{sbh}·(10 + 24/t{scores}) = {n}·(10 + 24/{t}{scores_n})"


def report(spec: ModelSpec, hw: Hardware, par: Parallel, zero: int = 0, micro_batch: int = 1,
           seq_len: int = 2048, recompute: str = "none", sp: bool = False, precision: str = "mixed",
           microbatches: int = 1, recompute_every: int = 1, usable_memory: float = 0.9,
           kernel: str = "eager") -> Report:
    """Every kind of memory on the first pipeline stage's rank, with its formula."""
    m = memory_per_rank(spec, par, zero, micro_batch, seq_len, recompute, sp, precision,
                        microbatches, recompute_every, kernel)
    recipe, c, acts = RECIPES[precision], count(spec), m.activation_parts
    replicas = par.dp * par.cp
    r = Report(f"{spec.name}: training memory per GPU, dp {par.dp} × tp {par.tp} × pp {par.pp}"
               f" × cp {par.cp} (ep {par.ep}) = {par.gpus:,} GPUs, ZeRO-{zero}, {precision}",
               context={"model": spec.name, "hardware": hw.key, "precision": precision})
    dense, experts = (c.total - c.experts) / (par.tp * par.pp), c.experts / (par.ep * par.pp)
    r.add("parameters per rank", m.params_per_rank, count_text(m.params_per_rank),
          f"(N − N_experts)/(tp·pp) + N_experts/(ep·pp) = {c.total - c.experts:,}/({par.tp}·{par.pp})"
          f" + {c.experts:,}/({par.ep}·{par.pp}) = {num(m.params_per_rank)}" if c.experts else
          f"N / (tp·pp) = {c.total:,} / ({par.tp}·{par.pp}) = {num(m.params_per_rank)}",
          "dense weights split over tp × pp ranks, routed experts over ep × pp; embeddings "
          "spread like any layer")
    for kind in ("params", "grads", "optimizer"):
        bytes_, shard = _recipe_bytes(recipe, kind), zero >= ZERO_SHARDS[kind]
        dense_shards, expert_shards = (replicas, replicas // par.ep) if shard else (1, 1)
        working = f"Ψ · {num(bytes_)} B / {dense_shards} = {num(dense)} · {num(bytes_)} / {dense_shards}"
        if experts:
            working = (f"Ψ_dense · {num(bytes_)} B / {dense_shards} + Ψ_experts · {num(bytes_)} B / "
                       f"{expert_shards} = {num(dense)} · {num(bytes_)} / {dense_shards} + "
                       f"{num(experts)} · {num(bytes_)} / {expert_shards}")
        r.add(kind, getattr(m, kind), gb(getattr(m, kind)), f"{working} = {size(getattr(m, kind))}",
              f"{recipe.text}; --precision {precision}", _sharding(kind, zero, replicas))
    _activation_lines(r, spec, par, acts, micro_batch, seq_len, recompute, sp, recompute_every, microbatches,
                      kernel)
    r.add("total", m.total, gb(m.total),
          f"params + grads + optimizer + activations = {size(m.params)} + {size(m.grads)} + "
          f"{size(m.optimizer)} + {size(m.activations)} = {size(m.total)}", NOT_COUNTED)
    usable = hw.hbm_bytes * usable_memory
    r.add("usable memory", usable, gb(usable),
          f"HBM · usable = {size(hw.hbm_bytes)} · {num(usable_memory)} = {size(usable)}",
          f"usable memory {usable_memory:.0%} of HBM (--usable-memory), {hw.key}")
    fits = m.total <= usable
    r.add("fits", fits, f"{'yes' if fits else 'no'} ({size(m.total)} {'≤' if fits else '>'} "
          f"{size(usable)} usable of {hw.hbm_bytes / 1e9:g} GB {hw.key})",
          f"total ≤ usable memory: {size(m.total)} {'≤' if fits else '>'} {size(usable)} = "
          f"{'yes' if fits else 'no'}")
    return r


def _activation_lines(r: Report, spec: ModelSpec, par: Parallel, acts: Activations, micro_batch: int,
                      seq_len: int, recompute: str, sp: bool, every: int, microbatches: int,
                      kernel: str) -> None:
    s, b, h, a, t = seq_len // par.cp, micro_batch, spec.D, spec.H, par.tp
    table = ("Korthikanti et al. 2022, Table 2: their GPT layer (MHA, 4h MLP, dropout), 16-bit "
             "activations, 1-byte dropout masks; for SwiGLU, GQA or MoE layers an estimate")
    shape = (f"s = {s:,} tokens per rank (sequence {seq_len:,} / cp {par.cp}), micro-batch b = {b}, "
             f"h = {h:,}, a = {a} heads, t = {t}" + (" with sequence parallelism" if sp else ""))
    policy = {"none": "no recomputation: each layer keeps everything its backward reads",
              "selective": "selective recomputation: the attention scores, softmax and its dropout "
                           "mask are recomputed, not kept (the 5·a·s/h term)",
              "full": (f"full recomputation, a checkpoint every {every} layer{'s' if every > 1 else ''}: "
                       "only each checkpoint's input (2·s·b·h) is kept")}[recompute]
    attention = ("attention kernel flash (--attention-kernel): FlashAttention never stores the "
                 "s×s scores, so the 5·a·s/h term is not kept (Dao et al. 2022)" if kernel == "flash" else
                 "attention kernel eager (--attention-kernel): scores, softmax and dropout mask kept, the "
                 "5·a·s/h term; FlashAttention (--attention-kernel flash) keeps none of them")
    r.add("activations per layer", acts.per_layer, gb(acts.per_layer),
          f"{_kept_formula(s, b, h, a, t, sp, recompute, kernel)} = {size(acts.per_layer)}", table, shape,
          policy, attention if recompute != "full" else "")
    flight = (f"{acts.in_flight} micro-batch{'es' if acts.in_flight > 1 else ''} in flight: 1F1B's "
              f"first stage holds min(pp, micro-batches) = min({par.pp}, {microbatches})" if par.pp > 1
              else "no pipeline: one micro-batch's activations at a time")
    if recompute == "full":
        working = (f"layers/(pp·k) checkpoints · in flight · per layer = {spec.n_layers}/({par.pp}·{every})"
                   f" · {acts.in_flight} · {size(acts.per_layer)} = {size(acts.layers)}")
    else:
        working = (f"layers/pp · in flight · per layer = {spec.n_layers}/{par.pp} · {acts.in_flight} · "
                   f"{size(acts.per_layer)} = {size(acts.layers)}")
    r.add("layer activations", acts.layers, gb(acts.layers), working, flight,
          "the rank is on the first pipeline stage, the one holding most")
    if recompute == "full":
        full = activation_bytes_per_layer(s, b, h, a, t, sp, kernel=kernel)
        r.add("recomputed in backward", acts.recomputed, gb(acts.recomputed),
              f"k · A_layer − checkpoint = {every} · {size(full)} − {size(acts.per_layer)} = "
              f"{size(acts.recomputed)}",
              "while one segment is differentiated its k layers' activations are live again "
              "(A_layer: Table 2 without recomputation; its first input is the checkpoint)")
    elif recompute == "selective" and kernel == "eager":
        r.add("recomputed in backward", acts.recomputed, gb(acts.recomputed),
              f"5·a·s²·b/t = 5·{a}·{s:,}²·{b}/{t} = {size(acts.recomputed)}",
              "one layer's attention scores, softmax and dropout mask, live while its backward runs")
    split = f"/{t}" if sp else ""
    r.add("embedding activations", acts.embedding, gb(acts.embedding),
          f"s·b·h{'/t' if sp else ''} · in flight = {s:,}·{b}·{h:,}{split} · {acts.in_flight} = "
          f"{size(acts.embedding)}",
          "the embeddings' dropout mask, 1 B per element (Korthikanti et al. 2022, section 4.3: "
          "s·b·h·p/t)")
    if par.pp == 1:
        r.add("output activations", acts.output, gb(acts.output),
              f"2·s·b·h{split} + 2·s·b·h{split} + 4·s·b·V/t = 4·{s:,}·{b}·{h:,}{split} + "
              f"4·{s:,}·{b}·{spec.V:,}/{t} = {size(acts.output)}",
              "final norm input and output-projection input (bf16), fp32 logits for the "
              "cross-entropy, vocabulary split over tp (Korthikanti et al. 2022, section 4.3: "
              "4·s·b·h/t·(1 + V/h))")
    else:
        r.add("output activations", 0, "0",
              f"0: the output layer is on the last pipeline stage (pp = {par.pp}), not this one",
              "Korthikanti et al. 2022 count the first stage: the output terms only when pp = 1")
    r.add("activations", acts.total, gb(acts.total),
          f"layers + recomputed + embedding + output = {size(acts.layers)} + {size(acts.recomputed)}"
          f" + {size(acts.embedding)} + {size(acts.output)} = {size(acts.total)}",
          "counted: what the layers keep for backward, what recomputation holds, the embedding "
          "and output layers")


def fit_report(hw: Hardware, par: Parallel, zero: int = 0, precision: str = "mixed",
               usable_memory: float = 0.9, activation_bytes: float = 0.0) -> Report:
    """The largest model whose model states fit on each GPU of a layout, from the bytes per
    parameter one GPU holds: Ψ/(tp·pp) · (params/z_p + grads/z_g + optimizer/z_o), z = dp × cp
    for the states ZeRO shards at that stage, 1 for the others."""
    recipe, replicas = RECIPES[precision], par.dp * par.cp
    r = Report(f"largest model on dp {par.dp} × tp {par.tp} × pp {par.pp} × cp {par.cp} = "
               f"{par.gpus:,} × {hw.key}, ZeRO-{zero}, {precision}",
               context={"hardware": hw.key, "precision": precision})
    usable = hw.hbm_bytes * usable_memory
    r.add("usable memory", usable, gb(usable),
          f"HBM · usable = {size(hw.hbm_bytes)} · {num(usable_memory)} = {size(usable)}",
          f"usable memory {usable_memory:.0%} of HBM (--usable-memory), {hw.key}")
    shards = {kind: replicas if zero >= ZERO_SHARDS[kind] else 1 for kind in ZERO_SHARDS}
    per_param = sum(_recipe_bytes(recipe, k) / shards[k] for k in ZERO_SHARDS) / (par.tp * par.pp)
    r.add("bytes per parameter", per_param, f"{per_param:.4g} B per parameter per GPU",
          f"(params/z_p + grads/z_g + optimizer/z_o) / (tp·pp) = ({num(recipe.params)}/{shards['params']}"
          f" + {num(recipe.grads)}/{shards['grads']} + {num(recipe.optimizer)}/{shards['optimizer']})"
          f" / ({par.tp}·{par.pp}) = {per_param:.4g} B",
          f"{recipe.text}; --precision {precision}",
          *(_sharding(kind, zero, replicas) for kind in ZERO_SHARDS))
    room = usable - activation_bytes
    if room <= 0:
        raise SpecError(f"{size(activation_bytes)} of activations leave no room in {size(usable)}")
    r.add("activations", activation_bytes, gb(activation_bytes), "",
          f"{size(activation_bytes)} per GPU reserved for activations (--activations)"
          if activation_bytes else "activations not counted: model states only (--activations GB "
          "reserves room for them)")
    largest = room / per_param
    r.add("largest model", largest, count_text(largest),
          f"(usable − activations) / bytes per parameter = ({size(usable)} − {size(activation_bytes)})"
          f" / {per_param:.4g} B = {num(largest)} parameters", NOT_COUNTED)
    return r


def layout(gpus: int, dp: int, tp: int, pp: int, cp: int) -> int:
    """The data-parallel size that fills `gpus` with the given tp × pp × cp (dp 1 = derive it)."""
    model = tp * pp * cp
    if dp == 1 and gpus % model == 0:
        return gpus // model
    if dp * model != gpus:
        raise SpecError(f"{gpus:,} GPUs do not split into dp {dp} × tp {tp} × pp {pp} × cp {cp}")
    return dp

