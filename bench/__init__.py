"""Side-by-side benchmarks against other systems: `python -m bench compare` (Cairn vs etcd 3.4).

One load generator drives both systems, so the numbers differ only by the server under test; each
repeat starts fresh clusters, so neither system benefits from the other's warm caches or grown data.
"""
