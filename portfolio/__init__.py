"""Portfolio runs: a whole file of customers through the model and the policy (issue 11).

`python -m portfolio.score` (or `make score`) with the local engine (Arrow streaming, this machine's
cores) or the Spark engine (the same scoring code inside a Spark job). See docs/ARCHITECTURE.md,
"Portfolio runs".
"""

import os

# Arrow's allocator: jemalloc rather than pyarrow's default, mimalloc. With mimalloc a run's memory kept
# growing with the file's length while Arrow's own count of allocated bytes stayed flat (freed pages
# kept, not reused); with jemalloc the peak is the same at 5,000,000 and 10,000,000 rows
# (docs/ARCHITECTURE.md, "The local engine"). Arrow reads this once, when pyarrow is first imported, so
# it is set here, before any module of this package imports pyarrow; a value already set is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
