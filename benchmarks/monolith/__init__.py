"""The original architecture, reproduced for the benchmarks: one FastAPI process predicting in-process."""
