"""The collectives, run by the simulated communicator: what moves and how many bytes."""

from __future__ import annotations

import numpy as np

from .core import (check_elements, described, elements, int_arg, shape_arg, shape_text,
                   size_text, table, text_arg)

_DTYPES = {"bf16": np.float16, "fp16": np.float16, "fp32": np.float32, "fp8": np.uint8}


@table
def collective_table(ranks: int = 4, shape: tuple[int, ...] = (1024, 1024),
                     dtype: str = "bf16") -> list[list[str]]:
    """Each collective on a tensor T of `shape`, run by the simulated communicator
    (`ref.collectives.Comm`) across `ranks` ranks: what each rank holds before and after, the
    steps, and the bytes the busiest rank sent (read off the communicator's ledger)."""
    from ..ref.collectives import Comm, shard

    int_arg("ranks", ranks, 2, 16)
    if text_arg("dtype", dtype) not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    shape = shape_arg(shape)
    if not shape or shape[0] % ranks:
        raise ValueError(f"the first axis of {shape_text(shape)} must split evenly over {ranks} ranks")
    check_elements(elements(shape) * ranks, f"{ranks} ranks × {described(shape)}",
                    within="a table runs the collectives on")
    t = np.ones(shape, dtype=_DTYPES[dtype])
    block = shard(t, ranks)[0].shape
    full, part = shape_text(shape), shape_text(block)
    runs = [("all-reduce", full, full, lambda c: c.all_reduce([t] * ranks)),
            ("reduce-scatter", full, part, lambda c: c.reduce_scatter([t] * ranks)),
            ("all-gather", part, full, lambda c: c.all_gather(shard(t, ranks))),
            ("all-to-all", full, full, lambda c: c.all_to_all([shard(t, ranks)] * ranks)),
            ("broadcast", f"{full} on one", full, lambda c: c.broadcast(t))]
    rows = []
    for name, before, after, run in runs:
        comm = Comm(ranks)
        run(comm)
        (record,) = comm.log
        role = "p2p" if name == "broadcast" else name
        rows.append([f"[{name}]{{.{role}}}", before, after, str(record.steps),
                     size_text(max(record.sent))])
    return rows
