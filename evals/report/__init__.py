"""Presenting: a campaign's report.html and summary.md.

summary gathers what a campaign wrote (events, drift, A/B, fidelity, personas, code and kernels) and
calls render, which fills templates/ with plots (matplotlib), gallery (persona cards) and transcripts
(the session browser's data). Nothing is imported here; import from the modules.
"""
