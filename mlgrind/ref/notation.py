"""Seed step 1: Noam Shazeer's shape-suffix notation, as data.

A tensor's name ends in its dimensions (`x_BLD`, `w_in_DF`). Each letter is defined once, here;
the suffix sheet, the cards and the reference code all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Letter:
    letter: str
    meaning: str
    family: str  # colour role of the letter on sheets and cards
    shazeer: bool  # one of the letters in Shazeer's original post


LETTERS: dict[str, Letter] = {
    entry.letter: entry
    for entry in [
        Letter("B", "batch size", "dim-batch", True),
        Letter("L", "sequence length (queries)", "dim-batch", True),
        Letter("M", "memory length (keys / values)", "dim-batch", True),
        Letter("D", "model dimension (d_model)", "dim-model", True),
        Letter("V", "vocabulary size", "dim-model", True),
        Letter("F", "feed-forward hidden dimension", "dim-model", True),
        Letter("H", "number of attention heads", "dim-heads", True),
        Letter("K", "size of each key / value head", "dim-heads", True),
        Letter("G", "number of kv-head groups (GQA)", "dim-heads", False),
        Letter("C", "compressed latent dimension (MLA)", "dim-heads", False),
        Letter("R", "RoPE dimension of the decoupled key (MLA)", "dim-heads", False),
        Letter("E", "number of experts (MoE)", "dim-parallel", False),
        Letter("S", "number of shards / ranks", "dim-parallel", False),
    ]
}


def split_suffix(name: str) -> tuple[str, str] | None:
    """`"w_in_DF"` → `("w_in", "DF")`; None when the name carries no suffix of known letters."""
    stem, sep, suffix = name.rpartition("_")
    if not sep or not stem or not suffix or not all(c in LETTERS for c in suffix):
        return None
    return stem, suffix
