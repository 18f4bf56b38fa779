"""Observability: request ids, logs and HTTP metrics, drift and decision monitoring, traces, health."""
