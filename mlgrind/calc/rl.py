"""RL training throughput: synchronous vs asynchronous (off-policy) generation and training.

Each RL step generates T tokens of rollouts, then trains on them. With g generation tokens/s
and r training tokens/s per GPU, and n GPUs:

    colocated sync     all n GPUs generate, then all train:      n / (tail/g + 1/r)
    split sync         n_g GPUs generate, n_t train, in turn:     1 / (tail/(n_g·g) + 1/(n_t·r))
                       (each pool idles while the other works)
    split async        the pools run at once, training on rollouts one step old:
                                                                  min(n_g·g, n_t·r)

A synchronous step also waits for its longest rollout: with `tail` = longest / mean rollout
length, generation slots idle for part of the step, so sync generation runs at g / tail. An
asynchronous generator refills a finished slot at once (continuous batching) and loses nothing.
The best split for async balances the pools: n_g / n = r / (g + r); there async matches the
colocated sync rate n·g·r / (g + r) while paying no tail and no switching between the two jobs.
The price is staleness: the policy that generated a rollout is one step behind the one trained.

Where the GPUs idle, as a fraction of all GPU-seconds (useful work is T/g + T/r GPU-seconds per
T tokens, whatever the layout): colocated sync idles only in the tail; split sync idles each
pool while the other works; split async idles the faster pool, waiting for the slower one.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.hardware import Hardware
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, num


@dataclass(frozen=True)
class RLThroughput:
    colocated_sync: float  # tokens/s
    split_sync: float
    split_async: float
    gen_gpus: int
    train_gpus: int
    gen_rate: float = 0.0  # per GPU, tokens/s
    train_rate: float = 0.0
    tail: float = 1.0

    def idle(self, throughput: float) -> float:
        """Fraction of all GPU-seconds doing nothing at `throughput` tokens/s trained."""
        return 1 - throughput * (1 / self.gen_rate + 1 / self.train_rate) / (self.gen_gpus + self.train_gpus)

    @property
    def split_sync_gen_idle(self) -> float:
        """The generation pool's idle fraction in split sync: the tail, then all of training."""
        return 1 - self.split_sync / (self.gen_gpus * self.gen_rate)

    @property
    def split_sync_train_idle(self) -> float:
        return 1 - self.split_sync / (self.train_gpus * self.train_rate)

    @property
    def split_async_gen_idle(self) -> float:
        return 1 - self.split_async / (self.gen_gpus * self.gen_rate)

    @property
    def split_async_train_idle(self) -> float:
        return 1 - self.split_async / (self.train_gpus * self.train_rate)


def best_split(n_gpus: int, gen_rate: float, train_rate: float) -> int:
    """Generation GPUs that balance the two pools (at least one GPU each)."""
    if n_gpus < 2:
        raise SpecError("a split needs at least 2 GPUs")
    return min(n_gpus - 1, max(1, round(n_gpus * train_rate / (gen_rate + train_rate))))


def throughput(n_gpus: int, gen_rate: float, train_rate: float, tail: float = 1.0,
               gen_gpus: int | None = None) -> RLThroughput:
    """Tokens/s trained, for per-GPU generation and training rates (tokens/s)."""
    if not (gen_rate > 0 and train_rate > 0):
        raise SpecError(f"generation and training rates must be above 0 tokens/s, not {gen_rate:g} and {train_rate:g}")
    if not tail >= 1:
        raise SpecError(f"tail is longest / mean rollout length, at least 1, not {tail:g}")
    n_g = best_split(n_gpus, gen_rate, train_rate) if gen_gpus is None else gen_gpus
    n_t = n_gpus - n_g
    if not 0 < n_g < n_gpus:
        raise SpecError(f"generation GPUs must be between 1 and {n_gpus - 1}, not {n_g}")
    sync_gen = gen_rate / tail
    return RLThroughput(
        colocated_sync=n_gpus / (1 / sync_gen + 1 / train_rate),
        split_sync=1 / (1 / (n_g * sync_gen) + 1 / (n_t * train_rate)),
        split_async=min(n_g * gen_rate, n_t * train_rate),
        gen_gpus=n_g,
        train_gpus=n_t,
        gen_rate=gen_rate,
        train_rate=train_rate,
        tail=tail,
    )


def train_rate(flops_per_token: float, peak: float, mfu: float) -> float:
    """Training tokens/s per GPU from the FLOPs of a step per token."""
    return peak * mfu / flops_per_token


def _n(x: float) -> str:
    """A rate inside a formula: whole with separators from 100 up to a billion, four digits
    otherwise (1.2e15, not sixteen digits of separators)."""
    return f"{x:,.0f}" if 100 <= abs(x) < 1e9 else num(x)


def _pct(x: float) -> str:
    return f"{x:.0%}" if abs(x) >= 0.01 or x == 0 else f"{x:.1%}"


def report(spec: ModelSpec, hw: Hardware, gpus: int = 64, gen_rate: float | None = None,
           training_rate: float | None = None, gen_batch: int = 64, context: int | None = None,
           mfu: float = 0.4, tail: float = 1.0, gen_gpus: int | None = None) -> Report:
    """The three layouts' throughputs with their formulas, and where each one's GPUs idle."""
    from mlgrind.calc import flops, inference

    s = spec
    context = min(4096, s.context) if context is None else inference.positions_arg(s, context, "--context")
    r = Report(f"{s.name}: RL on {gpus} × {hw.key}, tail {tail:g}", context={"model": s.name, "hardware": hw.key})
    if gen_rate is None:
        # Both pools at the same efficiency (--mfu of the peak and of HBM bandwidth): an ideal
        # generator against a realistic trainer would skew the split towards training.
        serving = inference.Serving(s, hw, gen_batch, 1.0, context, mfu=mfu, mbu=mfu)
        sizes = [2**i for i in range(inference.MAX_GPUS_PER_REPLICA.bit_length())]
        replica = next((p for p in (serving.plan(n, gen_batch) for n in sizes) if p.fits), None)
        if replica is None:
            raise SpecError(f"{gen_batch:,} rollouts of {context:,} tokens do not fit beside {s.name}'s "
                            f"weights on up to {sizes[-1]} {hw.key}: lower --gen-batch or pass --gen-rate")
        n, step = replica.gpus_per_replica, replica.step
        gen_rate = gen_batch / step.seconds / n
        r.add("generation rate per gpu", gen_rate, f"{_n(gen_rate)} tokens/s",
              f"B_gen / decode step / n = {gen_batch:,} / {step.seconds:.4g} s / {n} = {_n(gen_rate)}",
              f"decode of --gen-batch {gen_batch:,} rollouts with --context {context:,} cached tokens on the"
              f" smallest replica that holds them (n = {n}), as `calc serve` times it, its kernels at "
              f"{mfu:.0%} of the bf16 peak and of HBM bandwidth (--mfu, as the trainer)",
              "or measure it and pass --gen-rate")
    else:
        r.add("generation rate per gpu", gen_rate, f"{_n(gen_rate)} tokens/s (given)")
    if training_rate is None:
        per_token = flops.training_flops_per_token(s, context)
        training_rate = train_rate(per_token, hw.bf16_flops, mfu)
        r.add("training rate per gpu", training_rate, f"{_n(training_rate)} tokens/s",
              f"peak · MFU / training FLOPs per token = {num(hw.bf16_flops)} · {num(mfu)} / {num(per_token)}"
              f" = {_n(training_rate)}", f"MFU {mfu:.0%} of the bf16 peak (--mfu)",
              f"training FLOPs per token: 3 × forward at sequence --context {context:,}")
    else:
        r.add("training rate per gpu", training_rate, f"{_n(training_rate)} tokens/s (given)")
    t = throughput(gpus, gen_rate, training_rate, tail, gen_gpus)
    g, rt, n_g, n_t = gen_rate, training_rate, t.gen_gpus, t.train_gpus
    if gen_gpus is None:
        r.add("split", [n_g, n_t], f"{n_g} generate, {n_t} train",
              f"n_g = round(n · r / (g + r)) = round({gpus} · {_n(rt)} / ({_n(g)} + {_n(rt)})) = {n_g};"
              f" n_t = n − n_g = {n_t}", "the split that balances the pools, n_g·g = n_t·r, best for async")
    else:
        r.add("split", [n_g, n_t], f"{n_g} generate (given), {n_t} train", f"n_t = n − n_g = {gpus} − {n_g} = {n_t}")
    stale = "rollouts one policy step old (one-step off-policy)"
    tail_note = (f"tail {tail:g} = longest / mean rollout (--tail): a sync step waits for its longest "
                 "rollout, async refills a finished slot at once")
    r.add("colocated sync", t.colocated_sync, f"{_n(t.colocated_sync)} tokens/s",
          f"n / (tail/g + 1/r) = {gpus} / ({tail:g}/{_n(g)} + 1/{_n(rt)}) = {_n(t.colocated_sync)}",
          tail_note, "switching the GPUs between generating and training costs nothing (resharding left out)")
    idle = t.idle(t.colocated_sync)
    r.add("colocated sync idle", idle, _pct(idle),
          f"1 − throughput · (1/g + 1/r) / n = 1 − {_n(t.colocated_sync)} · (1/{_n(g)} + 1/{_n(rt)})"
          f" / {gpus} = {idle:.3g}: every GPU waits for the longest rollout, nothing else")
    r.add("split sync", t.split_sync, f"{_n(t.split_sync)} tokens/s",
          f"1 / (tail/(n_g·g) + 1/(n_t·r)) = 1 / ({tail:g}/({n_g}·{_n(g)}) + 1/({n_t}·{_n(rt)}))"
          f" = {_n(t.split_sync)}", tail_note)
    idle = t.idle(t.split_sync)
    r.add("split sync idle", idle, f"{_pct(idle)} (generation pool {_pct(t.split_sync_gen_idle)}, "
          f"training pool {_pct(t.split_sync_train_idle)})",
          f"1 − throughput · (1/g + 1/r) / n = {idle:.3g}; a pool idles 1 − throughput / its rate: "
          f"generators 1 − {_n(t.split_sync)} / ({n_g}·{_n(g)}) = {t.split_sync_gen_idle:.3g} (tail, then "
          f"training), trainers 1 − {_n(t.split_sync)} / ({n_t}·{_n(rt)}) = {t.split_sync_train_idle:.3g}"
          " (waiting for rollouts)")
    r.add("split async", t.split_async, f"{_n(t.split_async)} tokens/s",
          f"min(n_g·g, n_t·r) = min({n_g}·{_n(g)}, {n_t}·{_n(rt)}) = {_n(t.split_async)}", stale)
    idle = t.idle(t.split_async)
    slower = "generation" if n_g * g <= n_t * rt else "training"
    r.add("split async idle", idle, f"{_pct(idle)} (generation pool {_pct(t.split_async_gen_idle)}, "
          f"training pool {_pct(t.split_async_train_idle)})",
          f"1 − throughput · (1/g + 1/r) / n = {idle:.3g}: the faster pool waits for the {slower} pool")
    speedup = t.split_async / t.split_sync
    r.add("async speedup over split sync", speedup, f"{speedup:.3g}×",
          f"split async / split sync = {_n(t.split_async)} / {_n(t.split_sync)} = {speedup:.3g}")
    return r
