"""Changing a running service safely: revisions, weighted rollouts with gate-driven promotion and
automatic rollback, A/B experiments, and retiring a revision into an archive."""
