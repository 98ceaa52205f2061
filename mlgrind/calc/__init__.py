"""Back-of-envelope calculators from real model configs (`mlgrind calc`).

specs (config.json → ModelSpec) · hardware (hardware.yaml) · params · flops · train · memory ·
comms · inference · rl · cli. Pure functions; only `cli` prints. Nothing here imports NumPy
except speculative decoding, which reuses the reference package's formula.
"""
