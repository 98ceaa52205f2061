"""Inference: the KV cache, prefill and decode on a roofline part by part, serving, speculation.

    KV bytes per token   MHA/GQA 2·G·K·layers·bytes ; MLA (C + R)·layers·bytes

A forward pass over T = B·L new tokens (B sequences of L tokens, attending to M positions) has
two parts whose FLOPs per HBM byte differ by orders of magnitude:

    weight matmuls   FLOPs 2·T·N_matmul. Bytes: every weight a token goes through, read once
                     and shared by all T tokens (an MoE reads only the experts some token was
                     routed to), one embedding row per token (a lookup, not the whole table),
                     the norm vectors, and each matmul's input read and output written once
                     (T·A activations). About T FLOPs per byte in bf16: memory-bound at small T,
                     compute-bound past the ridge point peak / bandwidth.
    attention        FLOPs 2·T·M·layers·H·(K + K_v), dense. Bytes: q in and the output out, and
                     the keys and values: at decode each sequence reads its own cache, so about
                     H/G FLOPs per byte whatever the batch, always memory-bound. MLA decodes in
                     its absorbed form (`ref.mla.mla_absorbed`): every head scores against the one
                     cached latent (C + R) and sums latents (C), 2·T·M·layers·H·(2C + R) FLOPs for
                     (C + R) cached numbers per position, about 2H FLOPs per byte. MLA prefill
                     up-projects per-head keys and values (`mla_naive`): fewer FLOPs when every
                     position is new.

Each part takes max(FLOPs / (n·peak·MFU), bytes / (n·bandwidth·MBU)) on n GPUs, and a step the
sum of its parts: at a batch where the matmuls are compute-bound, attention still waits on the
cache. One max() over the whole step would let the one part's compute hide the other's reads.

Tensor parallelism splits both parts evenly over the n GPUs of a replica, except the cache: a
GPU holds ⌈G/n⌉ of the G kv heads (each head on n/G GPUs once n > G), and MLA's latent, shared
by all heads, sits whole on every GPU. Its communication is left out, as are elementwise work
(norms, RoPE, softmax) and kernel launch overheads: every time here is a lower bound. An MoE
step's experts follow uniform routing: a batch of T tokens touches E·(1 − (1 − top_k/E)^T) of a
layer's E experts, in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlgrind.calc.hardware import Hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, dur, gb, num, size

ACTIVATION_BYTES = 2  # activations stay bf16 whatever the weights' format
MAX_GPUS_PER_REPLICA = 64


# ----------------------------------------------------------------------------- the cache


def kv_bytes_per_token(spec: ModelSpec, bytes_per_element: float = 2) -> float:
    if spec.mla is not None:
        return (spec.mla.C + spec.mla.R) * spec.n_layers * bytes_per_element
    return 2 * spec.G * spec.K * spec.n_layers * bytes_per_element


def kv_bytes(spec: ModelSpec, tokens: int, batch: int = 1, bytes_per_element: float = 2) -> float:
    return batch * tokens * kv_bytes_per_token(spec, bytes_per_element)


def kv_formula(spec: ModelSpec, bytes_per_element: float) -> str:
    """The product behind `kv_bytes_per_token`, in letters and then in numbers."""
    if spec.mla is not None:
        return (f"(C + R) · layers · bytes = ({spec.mla.C} + {spec.mla.R}) · {spec.n_layers} · "
                f"{num(bytes_per_element)}")
    return f"2 · G · K · layers · bytes = 2 · {spec.G} · {spec.K} · {spec.n_layers} · {num(bytes_per_element)}"


def kv_copies(spec: ModelSpec, gpus: int) -> float:
    """How many times a replica of `gpus` tensor-parallel GPUs stores each cached number: a GPU
    holds ⌈G/n⌉ kv heads (the busiest one sets the pace and the memory), and MLA's latent is
    shared by all heads, so every GPU holds all of it."""
    if spec.mla is not None:
        return gpus
    return gpus * math.ceil(spec.G / gpus) / spec.G


# ----------------------------------------------------------------------------- the parts of a step


@dataclass(frozen=True)
class Part:
    name: str  # "weight matmuls" or "attention"
    flops: float  # all GPUs of the replica together
    bytes: float  # HBM traffic, all GPUs together
    compute_s: float  # flops / (n · peak · MFU)
    memory_s: float  # bytes / (n · bandwidth · MBU)

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes


@dataclass(frozen=True)
class Step:
    """A forward pass (prefill, or one decode step): its parts, each on its own roof."""

    weights: Part
    attention: Part

    @property
    def parts(self) -> tuple[Part, Part]:
        return self.weights, self.attention

    @property
    def seconds(self) -> float:
        return self.weights.seconds + self.attention.seconds

    @property
    def dominant(self) -> Part:
        return max(self.parts, key=lambda p: p.seconds)

    @property
    def bound(self) -> str:
        """The bound of the part that takes longer: what to speed up first."""
        return self.dominant.bound

    @property
    def flops(self) -> float:
        return self.weights.flops + self.attention.flops

    @property
    def bytes(self) -> float:
        return self.weights.bytes + self.attention.bytes

    @property
    def compute_s(self) -> float:
        """All FLOPs at the peak: with `memory_s`, what one max() over the step would compare."""
        return self.weights.compute_s + self.attention.compute_s

    @property
    def memory_s(self) -> float:
        return self.weights.memory_s + self.attention.memory_s


def experts_touched(spec: ModelSpec, tokens: float) -> float:
    """Expected routed experts of one MoE layer that at least one of `tokens` tokens goes to,
    each token picking top_k of E uniformly."""
    return spec.E * (1 - (1 - spec.top_k / spec.E) ** tokens)


def expert_params(spec: ModelSpec) -> float:
    """One routed expert's parameters."""
    return count(spec).experts / (spec.moe_layers * spec.E)


def weight_bytes_read(spec: ModelSpec, batch: int, bytes_per_weight: float) -> float:
    """Weights one pass over `batch` tokens reads: every matrix a token goes through (the routed
    experts some token was sent to), the norm vectors, and one embedding row per token (plus one
    position row with learned positions), not the whole table. The output head is read whole:
    every token multiplies by all of it, tied or not."""
    c = count(spec)
    rows = batch * spec.D * (2 if spec.learned_positions else 1)
    matrices = c.attention + c.mlp + c.router + c.output_head + c.vectors
    if spec.moe_layers:
        matrices += spec.moe_layers * experts_touched(spec, batch) * expert_params(spec)
    return (matrices + rows) * bytes_per_weight


def matmul_activations_per_token(spec: ModelSpec, absorbed: bool = False) -> int:
    """A in the docstring: elements one token moves through the weight matmuls, each matmul's
    input read and its output written once. `absorbed`: MLA's decode form, W_UK applied to the
    query (H·K_nope → H·C) and W_UV to the latent output (H·C → H·K_v), instead of the latent
    up-projected to per-head keys and values (C → H·(K_nope + K_v))."""
    D, H, G, K, K_v = spec.D, spec.H, spec.G, spec.K, spec.K_v
    if spec.mla is None:
        attention = (D + H * K) + (D + G * K) + (D + G * K_v) + (H * K_v + D)
    else:
        m = spec.mla
        query = (D + m.q_rank) + (m.q_rank + H * K) if m.q_rank else D + H * K
        up = (H * m.K_nope + H * m.C) + (H * m.C + H * K_v) if absorbed else m.C + H * (m.K_nope + K_v)
        attention = query + (D + m.C + m.R) + up + (H * K_v + D)
    matrices = 3 if spec.mlp_gated else 2  # gate, up and down each take D + F in and out
    dense = matrices * (D + spec.F)
    moe = (D + spec.E) + (spec.top_k + spec.n_shared_experts) * matrices * (D + spec.F_expert)
    return (spec.n_layers * attention + spec.dense_layers * dense + spec.moe_layers * moe
            + D + spec.V)


def attention_width(spec: ModelSpec, absorbed: bool) -> int:
    """Numbers per head-set a query brings and its output takes: H·(K + K_v), or absorbed MLA's
    H·((C + R) + C); the FLOPs per position are twice this, per layer."""
    if absorbed:
        return spec.H * (2 * spec.mla.C + spec.mla.R)
    return spec.H * (spec.K + spec.K_v)


def _roof(name: str, flops: float, bytes_: float, hw: Hardware, gpus: int, mfu: float, mbu: float) -> Part:
    return Part(name, flops, bytes_, flops / (gpus * hw.bf16_flops * mfu), bytes_ / (gpus * hw.hbm_bw * mbu))


def _step(spec: ModelSpec, hw: Hardware, batch: int, new: int, positions: int, gpus: int,
          bytes_per_weight: float, kv_bytes_per_element: float, mfu: float, mbu: float,
          absorbed: bool) -> Step:
    """`batch` sequences of `new` tokens each, attending to `positions` positions."""
    tokens = batch * new
    weights = _roof("weight matmuls", 2 * tokens * count(spec).matmul_per_token,
                    weight_bytes_read(spec, tokens, bytes_per_weight)
                    + tokens * matmul_activations_per_token(spec, absorbed) * ACTIVATION_BYTES,
                    hw, gpus, mfu, mbu)
    width = attention_width(spec, absorbed)
    if spec.mla is not None and not absorbed:  # per-head keys and values, split by heads
        keys_values = batch * positions * spec.n_layers * spec.H * (spec.K + spec.K_v) * ACTIVATION_BYTES
    else:
        keys_values = kv_copies(spec, gpus) * kv_bytes(spec, positions, batch, kv_bytes_per_element)
    attention = _roof("attention", 2 * tokens * positions * spec.n_layers * width,
                      tokens * spec.n_layers * width * ACTIVATION_BYTES + keys_values, hw, gpus, mfu, mbu)
    return Step(weights, attention)


def decode_step(spec: ModelSpec, hw: Hardware, batch: int, context: int, gpus: int = 1,
                bytes_per_weight: float = 2, kv_bytes_per_element: float = 2, *, mfu: float = 1.0,
                mbu: float = 1.0) -> Step:
    """One decode step: `batch` sequences each add one token after `context` cached ones, so
    each attends to context + 1 positions (its own key and value included). MLA absorbed."""
    return _step(spec, hw, batch, 1, context + 1, gpus, bytes_per_weight, kv_bytes_per_element,
                 mfu, mbu, absorbed=spec.mla is not None)


def prefill_step(spec: ModelSpec, hw: Hardware, prompt: int, batch: int = 1, gpus: int = 1,
                 bytes_per_weight: float = 2, kv_bytes_per_element: float = 2, *, mfu: float = 1.0,
                 mbu: float = 1.0) -> Step:
    """The forward pass over `batch` prompts of `prompt` tokens (attention dense over the
    prompt, as `flops.forward_flops` counts it: a causal kernel skips about half of it)."""
    return _step(spec, hw, batch, prompt, prompt, gpus, bytes_per_weight, kv_bytes_per_element,
                 mfu, mbu, absorbed=False)


def critical_batch(spec: ModelSpec, hw: Hardware, bytes_per_weight: float = 2, *, mfu: float = 1.0,
                   mbu: float = 1.0, limit: int = 1 << 20) -> int | None:
    """Smallest decode batch whose weight matmuls are compute-bound (None: not up to `limit`,
    when the activations' traffic keeps them below the ridge). Neither the context nor the
    number of GPUs moves it, and attention's FLOPs per byte do not grow with the batch. Without
    activations and for a dense model it is the ridge point × bytes per weight / 2."""
    def compute_bound(b: int) -> bool:
        return decode_step(spec, hw, b, 0, 1, bytes_per_weight, mfu=mfu, mbu=mbu).weights.bound == "compute"

    if not compute_bound(limit):
        return None
    low, high = 1, limit  # FLOPs per byte grow with the batch: bisect for the first compute-bound one
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if compute_bound(mid) else (mid + 1, high)
    return low


# ----------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class ServePlan:
    """One deployment: replicas of `gpus_per_replica` tensor-parallel GPUs, each decoding
    `batch_per_replica` users at once."""

    gpus_per_replica: int
    batch_per_replica: int
    replicas: int
    step: Step  # one decode step at that batch
    kv_per_user: float
    weights: float  # bytes of every parameter
    usable: float  # bytes of one replica's HBM that weights and cache may take
    kv_copies: float

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def tokens_per_second_per_user(self) -> float:
        return 1 / self.step.seconds

    @property
    def tokens_per_second_per_replica(self) -> float:
        return self.batch_per_replica / self.step.seconds

    @property
    def memory_used(self) -> float:
        return self.weights + self.batch_per_replica * self.kv_per_user * self.kv_copies

    @property
    def fits(self) -> bool:
        return self.memory_used <= self.usable

    @property
    def fit(self) -> int:
        """Largest batch whose cache fits beside the weights."""
        room = self.usable - self.weights
        return int(min(room // (self.kv_per_user * self.kv_copies), 2**53)) if room > 0 else 0


@dataclass(frozen=True)
class Serving:
    """What every candidate deployment shares."""

    spec: ModelSpec
    hw: Hardware
    users: int
    tokens_per_second: float  # target per user
    context: int  # cached tokens per user
    bytes_per_weight: float = 2
    kv_bytes_per_element: float = 2
    usable_memory: float = 0.9
    mfu: float = 1.0
    mbu: float = 1.0

    def plan(self, gpus: int, batch: int) -> ServePlan:
        step = decode_step(self.spec, self.hw, batch, self.context, gpus, self.bytes_per_weight,
                           self.kv_bytes_per_element, mfu=self.mfu, mbu=self.mbu)
        return ServePlan(gpus, batch, math.ceil(self.users / batch), step,
                         kv_bytes(self.spec, self.context, 1, self.kv_bytes_per_element),
                         count(self.spec).total * self.bytes_per_weight,
                         gpus * self.hw.hbm_bytes * self.usable_memory, kv_copies(self.spec, gpus))

    def fast(self, plan: ServePlan) -> bool:
        return plan.tokens_per_second_per_user >= self.tokens_per_second

    def fastest_batch(self, gpus: int) -> int:
        """Largest batch, at most the users, that fits and still decodes each user at the
        target (0: none)."""
        fit = self.plan(gpus, 1).fit
        if fit < 1 or not self.fast(self.plan(gpus, 1)):
            return 0
        low, high = 1, min(fit, self.users)  # step time grows with the batch: bisect for the last fast one
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self.fast(self.plan(gpus, mid)) else (low, mid - 1)
        return low

    def candidates(self, gpus: int | None = None, batch: int | None = None,
                   max_gpus: int = MAX_GPUS_PER_REPLICA) -> list[tuple[int, ServePlan | str]]:
        """Each replica size tried (`gpus`, or 1, 2, 4, … up to `max_gpus` that split the heads
        evenly within one scale-up domain) with its plan, or why it has none. A fixed `gpus` and
        `batch` give their plan when it fits."""
        out: list[tuple[int, ServePlan | str]] = []
        if gpus:
            tensor_parallel_arg(self.spec, self.hw, gpus)
        sizes = [gpus] if gpus else [n for n in (2**i for i in range(max_gpus.bit_length()))
                                     if n <= domain(self.hw) and self.spec.H % n == 0]
        for n in sizes:
            if batch is not None:
                plan = self.plan(n, batch)
                if gpus and not plan.fits:
                    raise SpecError(f"{batch:,} users of {self.context:,} cached tokens beside {self.spec.name}'s "
                                    f"weights need {size(plan.memory_used)} on {n} × {self.hw.key}, of "
                                    f"{size(plan.usable)} usable: lower --batch or add GPUs")
                if gpus or (plan.fits and self.fast(plan)):
                    out.append((n, plan))
                else:
                    out.append((n, "too slow" if plan.fits else "does not fit"))
                continue
            one = self.plan(n, 1)
            if one.fit < 1:
                out.append((n, "weights and one user's cache do not fit"))
            elif not self.fast(one):
                out.append((n, f"too slow even at batch 1 ({one.tokens_per_second_per_user:,.1f} tokens/s)"))
            else:
                out.append((n, self.plan(n, self.fastest_batch(n))))
        return out

    def best(self, gpus: int | None = None, batch: int | None = None,
             max_gpus: int = MAX_GPUS_PER_REPLICA) -> ServePlan:
        """The plan needing the fewest GPUs in all (ties: the smaller replica)."""
        tried = self.candidates(gpus, batch, max_gpus)
        plans = [p for _, p in tried if isinstance(p, ServePlan)]
        if not plans:
            reasons = "; ".join(_tried(tried))
            raise SpecError(f"{self.spec.name} cannot serve at {self.tokens_per_second:g} tokens/s per user "
                            f"with {self.context:,} cached tokens on {self.hw.key}: {reasons}")
        return min(plans, key=lambda p: (p.gpus, p.gpus_per_replica))


def domain(hw: Hardware) -> int:
    """Chips one tensor-parallel replica may span: its scale-up domain (an NVLink node, a TPU
    slice's ICI), since its per-layer all-reduces are not costed here."""
    return hw.scale_up.domain if hw.scale_up else hw.gpus_per_node


def tensor_parallel_arg(spec: ModelSpec, hw: Hardware, gpus: int) -> int:
    if spec.H % gpus:
        raise SpecError(f"{spec.name}'s {spec.H} query heads do not split evenly over {gpus} GPUs")
    if gpus > domain(hw):
        raise SpecError(f"a replica of {gpus} GPUs spans more than one {hw.key} scale-up domain of "
                        f"{domain(hw)}: tensor parallelism across it is not modelled")
    return gpus


def positions_arg(spec: ModelSpec, tokens: int, what: str) -> int:
    """`tokens` if the model has that many positions (its max_position_embeddings)."""
    if tokens > spec.context:
        raise SpecError(f"{what} {tokens:,} is beyond {spec.name}'s {spec.context:,} positions "
                        "(max_position_embeddings in its config)")
    return tokens


def serve(spec: ModelSpec, hw: Hardware, users: int, tokens_per_second: float, context: int,
          bytes_per_weight: float = 2, usable_memory: float = 0.9,
          max_gpus_per_replica: int = MAX_GPUS_PER_REPLICA, *, gpus_per_replica: int | None = None,
          batch: int | None = None, kv_bytes_per_element: float = 2, mfu: float = 1.0,
          mbu: float = 1.0) -> ServePlan:
    """GPUs to decode for `users` concurrent users, each at ≥ `tokens_per_second` with
    `context` tokens cached. Unless given, the replica size is the one needing the fewest GPUs
    in all among 1, 2, 4, …, and the batch the largest that both fits `usable_memory` of HBM
    and meets the target. With both given, the plan is that deployment, fit or not."""
    serving = Serving(spec, hw, users, tokens_per_second, context, bytes_per_weight,
                      kv_bytes_per_element, usable_memory, mfu, mbu)
    return serving.best(gpus_per_replica, batch, max_gpus_per_replica)


def speculative_speedup(alpha: float, gamma: int, draft_cost: float) -> tuple[float, float]:
    """(tokens per target pass, wall-time speed-up) of speculative decoding with acceptance
    rate α, γ drafted tokens and a draft call costing `draft_cost` target calls (Leviathan et
    al. 2023, Theorem 3.8): (1 − α^(γ+1)) / (1 − α) tokens for γ·c + 1 target-call times."""
    if not 0 <= alpha <= 1:
        raise SpecError(f"the acceptance rate α is a probability, from 0 to 1, not {alpha:g}")
    if draft_cost < 0 or gamma < 1:
        raise SpecError(f"a draft costs ≥ 0 target calls ({draft_cost:g}) and drafts ≥ 1 token ({gamma})")
    from mlgrind.ref.speculative import expected_speedup, expected_tokens_per_step

    return expected_tokens_per_step(alpha, gamma), expected_speedup(alpha, gamma, draft_cost)


# ----------------------------------------------------------------------------- reports


def kv_report(spec: ModelSpec, context: int | None = None, batch: int = 1,
              bytes_per_element: float = 2) -> Report:
    s = spec
    given = context is not None
    context = s.context if context is None else positions_arg(s, context, "--context")
    per_token = kv_bytes_per_token(s, bytes_per_element)
    r = Report(f"{s.name}: KV cache, {context:,} tokens × {batch:,} sequence{'s' if batch > 1 else ''}",
               context={"model": s.name})
    if s.mla is not None:
        r.add("attention", "MLA", "MLA: one latent and one RoPE key per token per layer, for all heads",
              f"C + R = {s.mla.C} + {s.mla.R} = {s.mla.C + s.mla.R} numbers per layer, shared by all {s.H} heads",
              "MLA caches the latent c_kv and the shared RoPE key (DeepSeek-V2, section 2.1)")
    elif s.G == s.H:
        r.add("attention", "MHA", "MHA: every query head has its own key and value head", f"G = H = {s.H}")
    else:
        r.add("attention", "GQA", f"GQA, {s.H // s.G} q heads per kv head", f"H / G = {s.H} / {s.G}")
    element = f"{num(bytes_per_element)} bytes per cached number (--kv-bytes; 2: bf16)"
    r.add("per token", per_token, gb(per_token), f"{kv_formula(s, bytes_per_element)} = {num(per_token)} B",
          element)
    sequence = per_token * context
    r.add("per sequence", sequence, gb(sequence),
          f"per token · context = {num(per_token)} · {context:,} = {num(sequence)} B",
          "" if given else "context: the model's longest (max_position_embeddings; --context)")
    r.add("per batch", sequence * batch, gb(sequence * batch),
          f"per sequence · batch = {num(sequence)} · {batch:,} = {num(sequence * batch)} B")
    mha = 2 * s.H * s.K_v * s.n_layers * bytes_per_element
    r.add("mha per token", mha, gb(mha),
          f"2 · H · K_v · layers · bytes = 2 · {s.H} · {s.K_v} · {s.n_layers} · {num(bytes_per_element)}"
          f" = {num(mha)} B", "the same model with one key and one value head per query head")
    r.add("saving vs mha", mha / per_token, f"{mha / per_token:.3g}×",
          f"mha per token / per token = {num(mha)} / {num(per_token)} = {mha / per_token:.3g}")
    return r


def _tried(tried: list[tuple[int, ServePlan | str]]) -> list[str]:
    """Each replica size's outcome, consecutive sizes with the same reason merged."""
    out: list[str] = []
    start = 0
    for i, (n, outcome) in enumerate(tried):
        if isinstance(outcome, ServePlan):
            out.append(f"n = {n}: batch {outcome.batch_per_replica:,} → {outcome.gpus:,} GPUs")
            start = i + 1
        elif i + 1 == len(tried) or tried[i + 1][1] != outcome:
            sizes = f"{tried[start][0]} to {n}" if start < i else f"{n}"
            out.append(f"n = {sizes}: {outcome}")
            start = i + 1
    return out


def _rate(x: float) -> str:
    """Tokens per second: whole above 100, three significant digits below."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _part_line(r: Report, label: str, part: Part, flops_formula: str, bytes_formula: str, gpus: int,
               hw: Hardware, mfu: float, mbu: float, *assumptions: str) -> None:
    formula = (f"FLOPs {flops_formula} = {num(part.flops)}; bytes {bytes_formula} = {num(part.bytes)}; "
               f"max(FLOPs / (n · peak · MFU), bytes / (n · bandwidth · MBU)) = max({num(part.flops)} / "
               f"({gpus} · {num(hw.bf16_flops)} · {num(mfu)}), {num(part.bytes)} / ({gpus} · "
               f"{num(hw.hbm_bw)} · {num(mbu)})) = max({dur(part.compute_s)}, {dur(part.memory_s)})"
               f" = {dur(part.seconds)}")
    r.add(label, part.seconds, f"{dur(part.seconds)} ({part.bound}-bound, {part.intensity:,.3g} FLOP/B)",
          formula, *assumptions)


def _weights_bytes_formula(spec: ModelSpec, tokens: int, bytes_per_weight: float, absorbed: bool) -> str:
    c = count(spec)
    shared = c.attention + c.mlp + c.router + c.output_head + c.vectors
    rows = 2 * spec.D if spec.learned_positions else spec.D
    A = matmul_activations_per_token(spec, absorbed)
    if spec.moe_layers:
        touched = experts_touched(spec, tokens)
        return (f"(matrices + vectors + MoE layers · E·(1 − (1 − top_k/E)^T) · expert + T · row) · b_w + T · A · 2"
                f" = ({num(shared)} + {spec.moe_layers} · {num(touched)} · {num(expert_params(spec))}"
                f" + {tokens:,} · {rows:,}) · {num(bytes_per_weight)} + {tokens:,} · {num(A)} · 2")
    return (f"(matrices + vectors + T · row) · b_w + T · A · 2 = ({num(shared)} + {tokens:,} · {rows:,})"
            f" · {num(bytes_per_weight)} + {tokens:,} · {num(A)} · 2")


def _attention_formulas(spec: ModelSpec, batch: int, new: int, positions: int, gpus: int,
                        kv_bytes_per_element: float, absorbed: bool) -> tuple[str, str]:
    """(FLOPs, bytes) of `_step`'s attention part, in letters and then in numbers."""
    tokens, layers, width = batch * new, spec.n_layers, attention_width(spec, absorbed)
    if absorbed:
        letters, numbers = "H·(2C + R)", f"{spec.H}·(2·{spec.mla.C} + {spec.mla.R})"
    else:
        letters, numbers = "H·(K + K_v)", f"{spec.H}·({spec.K} + {spec.K_v})"
    flops = f"2 · T · M · layers · {letters} = 2 · {tokens:,} · {positions:,} · {layers} · {numbers}"
    queries, queries_n = "T · layers · width · 2", f"{tokens:,} · {layers} · {width:,} · 2"
    if spec.mla is not None and not absorbed:
        kv, kv_n = "B · M · layers · width · 2", f"{batch:,} · {positions:,} · {layers} · {width:,} · 2"
    else:
        kv = "B · M · KV per token"
        kv_n = f"{batch:,} · {positions:,} · {num(kv_bytes_per_token(spec, kv_bytes_per_element))}"
        if kv_copies(spec, gpus) != 1:
            kv, kv_n = kv + " · copies", kv_n + f" · {num(kv_copies(spec, gpus))}"
    return flops, f"q and out {queries} + keys and values {kv} = {queries_n} + {kv_n}"


def serve_report(spec: ModelSpec, hw: Hardware, users: int = 10_000, tokens_per_second: float = 20.0,
                 context: int | None = None, prompt: int | None = None, bytes_per_weight: float = 2,
                 kv_bytes_per_element: float = 2, usable_memory: float = 0.9, mfu: float = 1.0,
                 mbu: float = 1.0, gpus: int | None = None, batch: int | None = None,
                 alpha: float = 0.8, gamma: int = 4, draft_cost: float = 0.05) -> Report:
    """The derivation of a deployment: memory per user → batch → step time → tokens/s per user
    against the target → replicas → GPUs; then prefill, the critical batch and speculation."""
    s = spec
    context = min(4096, s.context) if context is None else positions_arg(s, context, "--context")
    prompt = min(2048, s.context) if prompt is None else positions_arg(s, prompt, "--prompt")
    serving = Serving(s, hw, users, tokens_per_second, context, bytes_per_weight, kv_bytes_per_element,
                      usable_memory, mfu, mbu)
    tried = serving.candidates(gpus, batch)
    plan = serving.best(gpus, batch)
    n, B = plan.gpus_per_replica, plan.batch_per_replica
    c = count(s)
    r = Report(f"{s.name} on {hw.key}: {users:,} users at {tokens_per_second:g} tokens/s each, "
               f"{context:,} cached tokens per user", context={"model": s.name, "hardware": hw.key})
    target = f"target {tokens_per_second:g} tokens/s per user (--tokens-per-second)"
    concurrent = "all users decode at once, each with --context tokens cached (continuous batching)"
    roof = (f"kernels reach {num(mfu)} of the bf16 peak (--mfu) and {num(mbu)} of HBM bandwidth (--mbu): "
            "a roofline, so every time is a lower bound" if (mfu, mbu) != (1, 1) else
            "ideal kernels at 100 % of the bf16 peak and of HBM bandwidth (--mfu, --mbu): lower bounds")
    tp = "tensor parallelism over the replica's GPUs; its communication is left out"
    moe = "uniform routing: T tokens reach E·(1 − (1 − top_k/E)^T) experts of a layer" if s.moe_layers else ""

    # 1. memory per user and the batch it allows
    r.add("weights", plan.weights, gb(plan.weights),
          f"N · b_w = {num(c.total)} · {num(bytes_per_weight)} = {num(plan.weights)} B",
          f"{num(bytes_per_weight)} bytes per weight (--weight-bytes; 2: bf16), every expert stored")
    r.add("kv per user", plan.kv_per_user, gb(plan.kv_per_user),
          f"context · KV per token = {context:,} · {num(kv_bytes_per_token(s, kv_bytes_per_element))}"
          f" = {num(plan.kv_per_user)} B ({kv_formula(s, kv_bytes_per_element)} per token)",
          f"{num(kv_bytes_per_element)} bytes per cached number (--kv-bytes)", concurrent)
    if gpus:
        r.add("gpus per replica", n, f"{n} (given)")
    else:
        tries = "; ".join(_tried(tried))
        r.add("gpus per replica", n, f"{n}", f"fewest GPUs in all over n = 1, 2, 4, …: {tries}")
    r.add("usable memory per replica", plan.usable, gb(plan.usable),
          f"n · HBM · usable = {n} · {num(hw.hbm_bytes)} · {num(usable_memory)} = {num(plan.usable)} B",
          f"usable memory {usable_memory:.0%} of HBM (--usable-memory): the rest holds activations, "
          "the CUDA context and fragmentation")
    copies = "" if plan.kv_copies == 1 else " · copies"
    copies_n = "" if plan.kv_copies == 1 else f" · {num(plan.kv_copies)}"
    per_user, per_user_n = ("kv per user", size(plan.kv_per_user)) if plan.kv_copies == 1 else (
        "(kv per user · copies)", f"({size(plan.kv_per_user)}{copies_n})")
    r.add("batch that fits", plan.fit, f"{plan.fit:,} users",
          f"⌊(usable − weights) / {per_user}⌋ = ⌊({size(plan.usable)} − {size(plan.weights)}) / "
          f"{per_user_n}⌋ = {plan.fit:,}",
          "" if plan.kv_copies == 1 else
          f"the cache is stored {num(plan.kv_copies)} times over the {n} GPUs "
          + ("(MLA's latent is shared by all heads, so every GPU holds it)" if s.mla else
             f"(each GPU holds ⌈G/n⌉ = {math.ceil(s.G / n)} of the G = {s.G} kv heads)"))
    if batch:
        r.add("batch per replica", B, f"{B:,} (given)")
    else:
        binds = ("the memory binds" if B == plan.fit else "the users bind" if B == users
                 else "the target binds")
        r.add("batch per replica", B, f"{B:,} users",
              f"largest batch ≤ min(fit, users) = {min(plan.fit, users):,} whose step takes ≤ 1 / target"
              f" = {dur(1 / tokens_per_second)}: {B:,} ({binds})", target)

    # 2. the decode step at that batch, part by part
    absorbed = s.mla is not None
    step = plan.step
    _part_line(r, "decode weight matmuls", step.weights,
               f"2 · T · N_matmul = 2 · {B:,} · {num(c.matmul_per_token)}",
               _weights_bytes_formula(s, B, bytes_per_weight, absorbed), n, hw, mfu, mbu,
               "T = B tokens per decode step; the embedding is a lookup of T rows, the head read whole",
               "A: activations in and out of every matmul, each moved once, bf16", roof, moe)
    flops_f, bytes_f = _attention_formulas(s, B, 1, context + 1, n, kv_bytes_per_element, absorbed)
    _part_line(r, "decode attention", step.attention, flops_f, bytes_f, n, hw, mfu, mbu,
               "M = context + 1: the new token attends to the cache and to itself",
               "MLA absorbed (ref/mla.py mla_absorbed): scores against the latent, values in it"
               if absorbed else "")
    r.add("decode step", step.seconds, f"{dur(step.seconds)} ({step.bound}-bound)",
          f"weight matmuls + attention = {dur(step.weights.seconds)} + {dur(step.attention.seconds)}"
          f" = {dur(step.seconds)}: {step.dominant.name} take{'' if step.dominant is step.weights else 's'}"
          f" longer ({step.bound}-bound)",
          "each part on its own roof, the step their sum (one max() over the step would hide one)", tp)
    per_user = plan.tokens_per_second_per_user
    r.add("tokens per second per user", per_user, f"{_rate(per_user)} tokens/s",
          f"1 / step = 1 / {dur(step.seconds)} = {_rate(per_user)} tokens/s", target)
    meets = per_user >= tokens_per_second
    r.add("meets target", meets, "yes" if meets else "no",
          f"tokens/s per user {'≥' if meets else '<'} target: {_rate(per_user)} {'≥' if meets else '<'} "
          f"{tokens_per_second:g}")
    per_replica = plan.tokens_per_second_per_replica
    r.add("tokens per second per replica", per_replica, f"{_rate(per_replica)} tokens/s",
          f"B / step = {B:,} / {dur(step.seconds)} = {_rate(per_replica)} tokens/s")
    r.add("memory used", plan.memory_used, gb(plan.memory_used),
          f"weights + B · kv per user{copies} = {size(plan.weights)} + {B:,} · {size(plan.kv_per_user)}"
          f"{copies_n} = {size(plan.memory_used)} of {size(plan.usable)} usable")
    r.add("fits", plan.fits, "yes" if plan.fits else "no",
          f"memory used {'≤' if plan.fits else '>'} usable memory: {size(plan.memory_used)} "
          f"{'≤' if plan.fits else '>'} {size(plan.usable)}")

    # 3. replicas and GPUs
    r.add("replicas", plan.replicas, f"{plan.replicas:,}",
          f"⌈users / B⌉ = ⌈{users:,} / {B:,}⌉ = {plan.replicas:,}")
    r.add("gpus", plan.gpus, f"{plan.gpus:,} × {hw.key}",
          f"replicas · n = {plan.replicas:,} · {n} = {plan.gpus:,}")

    # 4. more of the same roofline: one user, the critical batch, prefill, speculation
    one = serving.plan(n, 1).step
    r.add("decode step batch 1", one.seconds, f"{dur(one.seconds)} ({one.bound}-bound)",
          f"weight matmuls + attention = {dur(one.weights.seconds)} ({one.weights.bound}) + "
          f"{dur(one.attention.seconds)} ({one.attention.bound}) = {dur(one.seconds)}")
    critical = critical_batch(s, hw, bytes_per_weight, mfu=mfu, mbu=mbu)
    ridge = hw.bf16_flops * mfu / (hw.hbm_bw * mbu)
    r.add("critical batch", critical, "never" if critical is None else f"{critical:,}",
          f"smallest B with 2·B·N_matmul / (peak·MFU) ≥ weight bytes(B) / (bandwidth·MBU), by bisection;"
          f" ridge peak / bandwidth = {num(ridge)} FLOP/B, so ≈ ridge · b_w / 2 = "
          f"{num(ridge * bytes_per_weight / 2)} for a dense model without activations",
          "attention's FLOPs per byte at decode do not grow with B (≈ H/G; absorbed MLA ≈ 2H)",
          "an MoE's weight bytes grow with B (more experts touched): its critical batch is larger"
          if s.moe_layers else "")
    pre = prefill_step(s, hw, prompt, 1, n, bytes_per_weight, kv_bytes_per_element, mfu=mfu, mbu=mbu)
    _part_line(r, "prefill weight matmuls", pre.weights,
               f"2 · T · N_matmul = 2 · {prompt:,} · {num(c.matmul_per_token)}",
               _weights_bytes_formula(s, prompt, bytes_per_weight, False), n, hw, mfu, mbu,
               "prefill: one user's --prompt tokens, T = prompt")
    flops_f, bytes_f = _attention_formulas(s, 1, prompt, prompt, n, kv_bytes_per_element, False)
    _part_line(r, "prefill attention", pre.attention, flops_f, bytes_f, n, hw, mfu, mbu,
               "prefill attention counted dense over M = prompt (a causal kernel skips about half)",
               "MLA prefill up-projects per-head keys and values (ref/mla.py mla_naive)" if s.mla else "")
    r.add("prefill latency", pre.seconds,
          f"{dur(pre.seconds)} ({prompt:,} tokens, weights {pre.weights.bound}-bound, "
          f"attention {pre.attention.bound}-bound)",
          f"weight matmuls + attention = {dur(pre.weights.seconds)} + {dur(pre.attention.seconds)}"
          f" = {dur(pre.seconds)}")
    tokens, speedup = speculative_speedup(alpha, gamma, draft_cost)
    r.add("speculative tokens per step", tokens, f"{tokens:.3g} (α {alpha:g}, γ {gamma})",
          f"(1 − α^(γ+1)) / (1 − α) = (1 − {alpha:g}^{gamma + 1}) / (1 − {alpha:g}) = {tokens:.4g}"
          if alpha < 1 else f"γ + 1 = {gamma + 1} (every draft accepted)",
          "Leviathan et al. 2023, Theorem 3.8: each draft token accepted with probability α (--alpha)")
    verify = plan.batch_per_replica * (gamma + 1)
    r.add("speculative speedup", speedup, f"{speedup:.3g}× at batch 1 (draft cost {draft_cost:g})",
          f"tokens per step / (γ · c + 1) = {tokens:.4g} / ({gamma} · {draft_cost:g} + 1) = {speedup:.4g}",
          "verifying γ + 1 tokens costs one decode step: true while the step is memory-bound (batch 1, "
          f"above); at this deployment's batch {B:,} a step would verify {verify:,} tokens, past the critical "
          f"batch {critical:,}, and speculation would pay compute instead of saving reads"
          if critical is not None and verify >= critical else
          "verifying γ + 1 tokens costs one decode step: true while the step is memory-bound, as here "
          f"({B:,} · (γ + 1) = {verify:,} tokens, below the critical batch)",
          "c: a draft call's time in target calls (--draft-cost)")
    return r
