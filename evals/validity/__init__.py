"""Measuring validity: can the simulated users be believed?

grounding (train/test split, personas from TRAIN, item space and memories) -> calibration (the
choice-model fit on TRAIN) -> fidelity (held-out taste, ratings and recommender order) -> drift
(run-to-run against persona-to-persona variance, read against a null) -> consistency (best-of-N and
held-out consistency metrics) -> verdicts (one row per check for the report). Nothing is imported
here; import from the modules.
"""
