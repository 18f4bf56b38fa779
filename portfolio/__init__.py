"""Portfolio runs: a whole file of customers through the model and the policy (issue 11).

`python -m portfolio.score` (or `make score`) with the local engine (Arrow streaming, this machine's
cores) or the Spark engine (the same scoring code inside a Spark job). See docs/ARCHITECTURE.md,
"Portfolio runs".
"""
