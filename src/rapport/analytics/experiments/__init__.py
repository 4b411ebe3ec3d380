"""A/B tests and holdouts with honest statistics.

* ``stats`` — the tests and intervals (two-proportion z-test, chi-squared, Welch's t-test,
  lifts with confidence intervals, the Holm correction), vectorized over comparisons;
* ``bootstrap`` — a seeded bootstrap for revenue per recipient, zeros included;
* ``sample_size`` — how many recipients a test needs before it can conclude;
* ``options`` — what a report can be asked for, checked once for the API and the CLI;
* ``analysis`` — groups compared with a reference, figures ready to show;
* ``weekly`` — the lift by week since the start (does the effect last?);
* ``verdict`` — the conclusion in plain words (English and Russian);
* ``splits`` / ``outcomes`` — a campaign's variants or a scenario split read from the store;
* ``incrementality`` — the global control group against everyone else;
* ``chart`` and ``export`` — the same figures as a chart and as CSV.

docs/experiments.md defines every statistic and the verdict rules.
"""
