"""Benchmarks of the credit-card eligibility system: `python -m benchmarks.run` (or `make bench`).

Every system under test is started here on free loopback ports and stopped afterwards; load comes
from well-known tools (wrk for closed-loop throughput, locust for paced and timed runs); results go
to docs/results/ as JSON, a Markdown summary and PNG charts. See docs/ARCHITECTURE.md.
"""
