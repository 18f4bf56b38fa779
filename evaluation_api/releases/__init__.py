"""Change control: policy versions, challengers in shadow, promotion and rollback (registry.py says how)."""
