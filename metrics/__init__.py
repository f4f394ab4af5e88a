"""Instruments, daily accounting, alert rules and dashboards (issue 7)."""
