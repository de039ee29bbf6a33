"""Load suite: a small mixed burst and the poll budget (bench/bench_load.py at scale)."""
