"""Drivers for the load tools: wrk (closed-loop throughput) and locust (paced and timed runs)."""
