"""The audit trail: append-only events (who did what to which record), and GET /api/v1/audit."""
