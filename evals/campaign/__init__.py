"""Running campaigns: simulated users x recommender variants x runs, on one machine or on Ray.

config (the typed campaign config) -> driver (check inputs, claim OUT, prepare, run; `run_campaign`)
-> world (personas, models, users built once per process) -> jobs / runner / ray_tasks (who runs which
session, and where) -> events (one TurnEvent per turn, append-only). foldin batches AMP-CF fold-ins;
inputs checks the files a campaign reads; runtime pins the CPU kernels; ab is the offline A/B table
of a campaign's recommender variants.

Nothing is imported here: `evals.cli` imports `evals.campaign.runtime` before numpy or torch loads,
and a Ray worker imports `evals.campaign.jobs` alone. Import from the modules.
"""
