"""Identity: accounts and system keys, passwords, signed tokens (and OIDC), roles, and who may call what."""
