"""Instruments, daily accounting, alert rules and dashboards."""
