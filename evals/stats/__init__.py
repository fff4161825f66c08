"""Every bootstrap, permutation test, multiple-comparison correction and power figure of evals/.

`evals.stats.bootstrap`: resampling users and percentile intervals. `evals.stats.testing`: permutation tests,
Holm, the smallest reachable p, the MDE and the error-rate simulation. This file imports nothing (the CLI pins
its CPU kernels before numpy loads); import from the modules.

The campaign's A/B table (`evals.campaign.ab`), fidelity (`evals.validity.fidelity`), drift
(`evals.validity.drift`) and the consistency metrics (`evals.validity.consistency`) define their
statistics; the resampling, the tests and the corrections they read them with are here, once.

Bootstrap: percentile intervals over users. `resample_indices` draws the users of every resample, so
`bootstrap_ci` (a statistic of a list of records), `bootstrap_mean_ci` (a mean, in one array
operation), `bootstrap_pooled_auc` (a weight per user) and `ratio_of_means_ci` resample the same users
for one seed. `stratified_resample_indices` resamples within groups (drift: users within personas).

Permutation: `paired_test`'s two-sided sign-flip test of a mean paired difference (scipy), and
`label_permutations` / `permutation_p_value` for a statistic of group labels (drift's null: persona
labels permuted across users), exact when every distinct assignment can be enumerated.

Holm: `holm`, Holm-Bonferroni adjusted p-values. Power: `min_p` (the smallest p a sign-flip test can
give with n pairs) and `mde` (the minimum detectable mean paired difference, normal approximation);
`simulate_rejection_rates` measures the paired test + Holm's error rates on synthetic data.

recsys keeps its own `recsys.metrics.paired_bootstrap_ci` for the offline benchmark: recsys imports
nothing of ours (DESIGN.md's layering), so it cannot call this module.
"""
