"""Applications: the `triage` CLI, the local stack supervisor, the ticket simulator (the top floor)."""
