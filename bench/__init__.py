"""Side-by-side benchmarks of vsteer: one module per figure, each printing a table and writing JSON.

Run one with `python -m bench.<name> --help`; `docs/benchmarks.md` records the figures. Benchmarks are
not tests: nothing here asserts on speed.
"""
