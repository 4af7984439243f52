"""Gates of ``llmctl verify``: check, smoke, load, quality, compliance; JUnit, JSON and HTML reports.

``verify.verify(bp, target)`` runs them in order. Importing this package is cheap on purpose:
Locust (gevent) runs only in the load gate's child process, matplotlib only when a report is drawn.
"""
