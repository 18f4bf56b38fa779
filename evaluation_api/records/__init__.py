"""Decision records: the table, the group-commit writer, reads under the per-record rules, and a record
as the API shows it."""
