"""Personal data (LGPD): encryption at rest and key rotation, data-subject requests, retention."""
