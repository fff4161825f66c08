"""Measuring validity: can the simulated users be believed?

grounding (train/test split, personas from TRAIN, item space and memories) -> calibration (the
choice-model fit on TRAIN) -> fidelity (held-out taste, ratings and recommender order; its A/B part
in fidelity_ab) -> drift (run-to-run against persona-to-persona variance, read against a null) ->
consistency (best-of-N and held-out consistency metrics) -> verdicts (one row per check for the
report). Their statistics are `evals.stats`. Nothing is imported here; import from the modules.
"""
