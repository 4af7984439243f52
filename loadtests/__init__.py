"""Locust load profiles used by ``llmctl verify`` (and runnable with ``locust -f``)."""
