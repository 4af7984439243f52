"""Operating a deployed service: alert rules from the blueprint's SLOs, the on-call runbook, and
backup and restore of a stack's state.

The rules and the runbook are pure functions of the typed blueprint (and a target's plan), so the
rules the cluster evaluates, the rules promtool tests and the runbook on-call reads never disagree.
"""
