"""Seed topic "communication math": simulated collectives that count the bytes they move.

Ranks are a list of NumPy arrays, one per rank. Each collective computes its result by actually
passing chunks between ranks, step by step, under a named algorithm, and records per rank the bytes
sent and received, and every message in a per-step ledger. Those records, not the closed forms
below, are where the curriculum's "bytes per rank" facts and the ring figures come from; the closed
forms are checked against them.

Algorithms modelled (a step is one round in which each rank sends at most one message):
- all-reduce: ring, = ring reduce-scatter then ring all-gather; 2(S-1) steps.
- reduce-scatter, all-gather: ring; S-1 steps, each rank passes one chunk to its right neighbour.
- all-to-all: pairwise exchange; in step t rank r sends its chunk for rank r+t directly.
- broadcast: "ring" is a chain root -> root+1 -> ... (S-1 steps); "tree" is a binomial tree
  (ceil(log2 S) steps, every rank that has the data sends it on).
- send_recv: one step, every rank sends its array to rank r+shift (the ring-attention shift).
- send: one point-to-point message (a pipeline stage handing activations on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Transfer:
    """One message of a collective: in round `step` (from 0), src sent nbytes to dst; chunk is
    the index of the block it carried when the algorithm cuts the tensor into blocks."""

    step: int
    src: int
    dst: int
    chunk: int | None
    nbytes: int


@dataclass
class Record:
    """One collective call: what ran, on which per-rank shapes, the bytes each rank moved, and
    the per-step ledger of messages those totals add up from (what the figures draw)."""

    collective: str
    algorithm: str
    shapes: list[tuple[int, ...]]  # each rank's input shape
    dtype: str
    tag: str
    sent: list[int]
    received: list[int]
    steps: int = 0
    transfers: list[Transfer] = field(default_factory=list)


@dataclass
class Comm:
    """S simulated ranks and a ledger of everything sent between them."""

    size: int
    log: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a communicator needs at least one rank, not {self.size}")

    @property
    def sent(self) -> list[int]:
        return [sum(r.sent[s] for r in self.log) for s in range(self.size)]

    @property
    def received(self) -> list[int]:
        return [sum(r.received[s] for r in self.log) for s in range(self.size)]

    def records(self, collective: str | None = None, tag: str | None = None) -> list[Record]:
        """The log entries for one collective and/or tag (None matches any)."""
        return [r for r in self.log if collective in (None, r.collective) and tag in (None, r.tag)]

    # -- bookkeeping ------------------------------------------------------------------------

    def _begin(self, collective: str, algorithm: str, arrays: list[np.ndarray], tag: str) -> Record:
        if len(arrays) != self.size:
            raise ValueError(f"{collective} needs one array per rank: got {len(arrays)}, "
                             f"comm.size is {self.size}")
        shapes = [a.shape for a in arrays]
        record = Record(
            collective,
            algorithm,
            shapes,
            str(arrays[0].dtype),
            tag,
            [0] * self.size,
            [0] * self.size,
        )
        self.log.append(record)
        return record

    @staticmethod
    def _move(record: Record, src: int, dst: int, payload: np.ndarray, chunk: int | None = None,
              step: int | None = None) -> np.ndarray:
        """Send payload in round `step` (default: the round under way, record.steps)."""
        if src != dst:  # a rank handing data to itself moves nothing over the wire
            record.sent[src] += payload.nbytes
            record.received[dst] += payload.nbytes
            step = record.steps if step is None else step
            record.transfers.append(Transfer(step, src, dst, chunk, payload.nbytes))
        return payload.copy()  # the receiver owns its copy: no aliasing across ranks

    def _same_shape(self, name: str, xs: list[np.ndarray]) -> None:
        if len({(x.shape, x.dtype) for x in xs}) != 1:
            raise ValueError(f"{name} needs the same shape and dtype on every rank")

    def check_ranks(self, **per_rank) -> None:
        """Raise unless every keyword holds one entry per rank (arrays, blocks, saved state).

        Sharded functions call this first, so a list cut for the wrong number of ranks fails
        with its name and both counts instead of deep inside a zip or a collective.
        """
        for name, entries in per_rank.items():
            if len(entries) != self.size:
                raise ValueError(
                    f"{name} needs one entry per rank: got {len(entries)} for {self.size} ranks"
                )

    # -- ring building blocks on chunks[rank][chunk] ----------------------------------------

    def _ring_reduce_scatter(
        self, record: Record, chunks: list[list[np.ndarray]]
    ) -> list[np.ndarray]:
        """After S-1 steps rank r holds the full sum of chunk r."""
        S = self.size
        for t in range(S - 1):
            # chunk c starts at rank c+1 and gathers one partial sum per hop, ending at rank c
            messages = [(r, (r + 1) % S, (r - t - 1) % S) for r in range(S)]
            payloads = [self._move(record, r, dst, chunks[r][c], c) for r, dst, c in messages]
            for (_, dst, c), payload in zip(messages, payloads):
                chunks[dst][c] = chunks[dst][c] + payload
            record.steps += 1
        return [chunks[r][r] for r in range(S)]

    def _ring_all_gather(self, record: Record, owned: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Rank r starts with chunk r; after S-1 steps every rank holds every chunk."""
        S = self.size
        chunks: list[list[np.ndarray | None]] = [[None] * S for _ in range(S)]
        for r in range(S):
            chunks[r][r] = owned[r]
        for t in range(S - 1):
            messages = [(r, (r + 1) % S, (r - t) % S) for r in range(S)]
            payloads = [self._move(record, r, dst, chunks[r][c], c) for r, dst, c in messages]
            for (_, dst, c), payload in zip(messages, payloads):
                chunks[dst][c] = payload
            record.steps += 1
        return chunks

    # -- collectives ------------------------------------------------------------------------

    def all_reduce(self, xs: list[np.ndarray], tag: str = "") -> list[np.ndarray]:
        """Every rank gets the elementwise sum. Ring: reduce-scatter then all-gather."""
        self._same_shape("all_reduce", xs)
        record = self._begin("all_reduce", "ring", xs, tag)
        chunks = [np.array_split(x.reshape(-1), self.size) for x in xs]
        reduced = self._ring_reduce_scatter(record, chunks)
        gathered = self._ring_all_gather(record, reduced)
        return [np.concatenate(c).reshape(xs[0].shape) for c in gathered]

    def reduce_scatter(
        self, xs: list[np.ndarray], axis: int = 0, tag: str = ""
    ) -> list[np.ndarray]:
        """Rank r gets block r (np.array_split along axis) of the elementwise sum."""
        self._same_shape("reduce_scatter", xs)
        record = self._begin("reduce_scatter", "ring", xs, tag)
        chunks = [np.array_split(x, self.size, axis=axis) for x in xs]
        return self._ring_reduce_scatter(record, chunks)

    def all_gather(self, xs: list[np.ndarray], axis: int = 0, tag: str = "") -> list[np.ndarray]:
        """Every rank gets all ranks' arrays concatenated along axis (blocks may differ in size).

        The dtype must agree: concatenating would silently upcast, and the record keeps one dtype.
        """
        dtypes = sorted({str(x.dtype) for x in xs})
        if len(dtypes) > 1:
            raise ValueError(f"all_gather needs the same dtype on every rank, not {dtypes}")
        record = self._begin("all_gather", "ring", xs, tag)
        gathered = self._ring_all_gather(record, xs)
        return [np.concatenate(c, axis=axis) for c in gathered]

    def all_to_all(self, chunks: list[list[np.ndarray]], tag: str = "") -> list[list[np.ndarray]]:
        """chunks[src][dst] goes from src to dst; returns out[dst][src]. Chunk sizes may differ."""
        S = self.size
        record = self._begin("all_to_all", "pairwise", [np.concatenate(c) for c in chunks], tag)
        out: list[list[np.ndarray | None]] = [[None] * S for _ in range(S)]
        for t in range(S):  # t = 0: each rank keeps its own chunk, which costs nothing
            for r in range(S):
                dst = (r + t) % S
                # round t = 0 moves nothing, so the first real exchange is step 0
                out[dst][r] = self._move(record, r, dst, chunks[r][dst], dst, step=t - 1)
        record.steps = S - 1
        return out

    def broadcast(
        self, x: np.ndarray, root: int = 0, algorithm: str = "ring", tag: str = ""
    ) -> list[np.ndarray]:
        """Every rank gets root's x, via a chain ("ring") or a binomial tree ("tree")."""
        S = self.size
        record = self._begin("broadcast", algorithm, [x] * S, tag)
        have: dict[int, np.ndarray] = {root: x.copy()}
        if algorithm == "ring":
            for t in range(S - 1):
                src, dst = (root + t) % S, (root + t + 1) % S
                have[dst] = self._move(record, src, dst, have[src])
                record.steps += 1
        elif algorithm == "tree":
            span = 1
            while span < S:  # every holder (relative rank i < span) sends to i + span
                for i in range(min(span, S - span)):
                    src, dst = (root + i) % S, (root + i + span) % S
                    have[dst] = self._move(record, src, dst, have[src])
                span *= 2
                record.steps += 1
        else:
            raise ValueError(f"broadcast algorithm must be 'ring' or 'tree', not {algorithm!r}")
        return [have[r] for r in range(S)]

    def send_recv(self, xs: list[np.ndarray], shift: int = 1, tag: str = "") -> list[np.ndarray]:
        """Rank r sends xs[r] to rank r+shift (mod S) and receives from r-shift, in one step."""
        S = self.size
        record = self._begin("send_recv", "ring", xs, tag)
        out: list[np.ndarray | None] = [None] * S
        for r in range(S):
            out[(r + shift) % S] = self._move(record, r, (r + shift) % S, xs[r])
        record.steps = int(shift % S != 0)
        return out

    def send(self, x: np.ndarray, src: int, dst: int, tag: str = "") -> np.ndarray:
        """Point-to-point: dst receives a copy of src's x."""
        record = self._begin("send", "p2p", [x] * self.size, tag)
        record.shapes = [
            x.shape if r == src else () for r in range(self.size)
        ]  # only src has input
        record.steps = int(src != dst)
        return self._move(record, src, dst, x, step=0)


def shard(x: np.ndarray, S: int, axis: int = 0) -> list[np.ndarray]:
    """Split x into S contiguous blocks along axis (the first ones one longer when uneven)."""
    if not 1 <= S <= x.shape[axis]:
        raise ValueError(f"cannot shard an axis of length {x.shape[axis]} over {S} ranks")
    return [b.copy() for b in np.array_split(x, S, axis=axis)]


# Closed forms: bytes each rank sends (= receives) when n_bytes divides evenly into S chunks.


def ring_all_reduce_bytes(n_bytes: int, S: int) -> float:
    """n_bytes = the tensor each rank holds (and gets back summed)."""
    return 2 * (S - 1) * n_bytes / S


def ring_reduce_scatter_bytes(n_bytes: int, S: int) -> float:
    """n_bytes = the full tensor each rank holds before the reduce (not the 1/S it keeps)."""
    return (S - 1) * n_bytes / S


def ring_all_gather_bytes(n_bytes: int, S: int) -> float:
    """n_bytes = the full gathered tensor (S times what each rank contributes)."""
    return (S - 1) * n_bytes / S


def all_to_all_bytes(n_bytes: int, S: int) -> float:
    """n_bytes = everything one rank holds before the exchange; it keeps 1/S of it."""
    return (S - 1) * n_bytes / S


def broadcast_bytes(n_bytes: int, S: int, algorithm: str = "ring") -> int:
    """Bytes the busiest rank sends; with either algorithm each non-root rank receives n_bytes."""
    if S == 1:
        return 0
    if algorithm == "ring":
        return n_bytes
    return math.ceil(math.log2(S)) * n_bytes  # the root sends once per tree level
