"""Benchmarks: how many conversations one process carries, what each costs, how cost grows.

`python -m bench.run --help` (see the README's "Benchmark" section). Results go to
bench/results/ (git-ignored).
"""
