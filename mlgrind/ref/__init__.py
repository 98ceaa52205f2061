"""NumPy reference implementations of every model piece in the curriculum.

Tensors are named with Shazeer's shape suffixes (see `notation`); contractions are einsums read
off those names. Everything here is NumPy and the standard library only.
"""
