"""Evaluations: one evaluation from validated figures to a recorded decision, idempotency, and its routes
(/api/v1/evaluations, the legacy /avaliar, /api/v1/figures)."""
