"""Tools shared by the tests and the benchmarks (starting the project's real processes).

Depends on nothing in tests/ or benchmarks/: both import from here, never the other way round.
"""
