"""One module per stretch of the seed: each lists its exercises (contract, hints, checks)."""
