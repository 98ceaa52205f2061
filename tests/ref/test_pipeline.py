import itertools

import numpy as np
import pytest

from mlgrind.ref import mlp, pipeline
from mlgrind.ref.collectives import Comm

SCHEDULES = {"gpipe": pipeline.gpipe_order, "1f1b": pipeline.one_f_one_b_order}
SIZES = [(p, m) for p in (1, 2, 3, 4, 5) for m in (1, 2, 3, 4, 8)]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("p, m", SIZES)
@pytest.mark.parametrize("t_bwd", [1.0, 2.0])
def test_bubble_fraction_measured_on_the_timeline_equals_the_formula(schedule, p, m, t_bwd):
    ops = pipeline.simulate(SCHEDULES[schedule](p, m), t_fwd=1.0, t_bwd=t_bwd)
    assert pipeline.bubble_fraction(ops) == pytest.approx(pipeline.bubble_fraction_formula(p, m))


@pytest.mark.parametrize("p, m", SIZES)
def test_gpipe_holds_every_microbatch_1f1b_at_most_p_minus_s(p, m):
    gpipe = pipeline.simulate(pipeline.gpipe_order(p, m))
    one_f_one_b = pipeline.simulate(pipeline.one_f_one_b_order(p, m))
    assert pipeline.peak_in_flight(gpipe) == [m] * p
    assert pipeline.peak_in_flight(one_f_one_b) == [min(p - s, m) for s in range(p)]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("p, m", [(3, 5), (4, 4)])
def test_timeline_respects_dependencies_and_runs_one_op_at_a_time(schedule, p, m):
    ops = pipeline.simulate(SCHEDULES[schedule](p, m))
    end = {(op.kind, op.stage, op.micro): op.end for op in ops}
    assert len(end) == len(ops) == 2 * p * m
    for op in ops:
        if op.kind == "F" and op.stage > 0:
            assert op.start >= end[("F", op.stage - 1, op.micro)]
        if op.kind == "B":
            assert op.start >= end[("F", op.stage, op.micro)]
            if op.stage < p - 1:
                assert op.start >= end[("B", op.stage + 1, op.micro)]
    for s in range(p):
        mine = sorted((op for op in ops if op.stage == s), key=lambda op: op.start)
        assert all(a.end <= b.start for a, b in itertools.pairwise(mine))


def stack(rng, p, D, F):
    w_in = [rng.standard_normal((D, F)) / np.sqrt(D) for _ in range(p)]
    w_out = [rng.standard_normal((F, D)) / np.sqrt(F) for _ in range(p)]
    return w_in, w_out


def unsharded_grads(x, target, w_in, w_out):
    """The oracle: the whole batch through the whole stack in one process."""
    saved = []
    for w_i, w_o in zip(w_in, w_out):
        x, s = mlp.mlp_forward(x, w_i, w_o)
        saved.append(s)
    d_y = mlp.l2_loss(x, target)[1]
    grads = []
    for s in reversed(saved):
        d_y, d_w_in, d_w_out = mlp.mlp_backward(d_y, s)
        grads.append((d_w_in, d_w_out))
    return grads[::-1]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("p, m", [(1, 1), (2, 3), (3, 4), (4, 7)])
def test_running_the_schedule_gives_the_unsharded_gradients(schedule, p, m):
    B, D, F = 7, 3, 4  # m = 3 and 4 cut the batch of 7 unevenly
    rng = np.random.default_rng(p * 10 + m)
    x, target = rng.standard_normal((B, D)), rng.standard_normal((B, D))
    w_in, w_out = stack(rng, p, D, F)
    ops = pipeline.simulate(SCHEDULES[schedule](p, m))
    comm = Comm(p)
    d_w_in, d_w_out, peaks = pipeline.run(ops, comm, x, target, w_in, w_out)
    for s, (e_in, e_out) in enumerate(unsharded_grads(x, target, w_in, w_out)):
        np.testing.assert_allclose(d_w_in[s], e_in, atol=1e-10)
        np.testing.assert_allclose(d_w_out[s], e_out, atol=1e-10)
    # Saved activations counted from the real stash agree with the timeline's count.
    assert peaks == pipeline.peak_in_flight(ops)
    # Each microbatch crosses each of the p - 1 stage boundaries once forward, once backward.
    for tag in ("activation", "gradient"):
        records = comm.records("send", tag=tag)
        assert len(records) == (p - 1) * m
        assert sum(sum(r.sent) for r in records) == (p - 1) * B * D * 8


def test_errors():
    with pytest.raises(ValueError, match="deadlocks"):
        pipeline.simulate([[("B", 0), ("F", 0)]])
    rng = np.random.default_rng(0)
    ops = pipeline.simulate(pipeline.gpipe_order(2, 4))
    with pytest.raises(ValueError, match="cannot shard"):  # 4 microbatches from a batch of 3
        pipeline.run(ops, Comm(2), np.ones((3, 2)), np.ones((3, 2)), *stack(rng, 2, 2, 3))
