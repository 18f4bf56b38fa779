"""Human review of automated decisions (LGPD art. 20): the pure rules, the cases in the database, the routes."""
