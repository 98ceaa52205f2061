"""Back-of-envelope calculators from real model configs (`mlgrind calc`).

specs (config.json → ModelSpec) · hardware (hardware.yaml) · params · flops · train · memory ·
comms · inference · rl · plan (the sharding planner, over memory, flops and comms) · working
(what every topic answers with: a Report of values, each with its formula and assumptions) ·
cli. Pure functions; only `cli` prints. Nothing here imports NumPy except speculative decoding,
which reuses the reference package's formula.
"""
