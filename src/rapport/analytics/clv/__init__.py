"""Predictive customer lifetime value: BG/NBD, Pareto/NBD and Gamma-Gamma.

``summary`` turns transactions into the per-customer (x, t_x, T, m̄) the models read;
``bgnbd``, ``paretonbd`` and ``gammagamma`` are the models, one per module and each citing
its paper, on the shared search in ``fitting``; ``value`` combines a purchase model and
the spend model into a discounted CLV; ``holdout`` checks a model's forecast against what
customers did after the calibration period; ``transactions_csv`` and ``report`` serve
`rapport clv fit`; ``store_orders`` and ``scoring`` fit the models to the store's orders
and write the predictions onto every customer; ``simulate`` draws customers from the
models' own stories. See docs/clv.md.
"""
