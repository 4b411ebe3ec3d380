"""Product recommendations: lists built on a schedule, read cheaply for each request.

``build`` turns the store's orders, views and catalog into ranked lists (``rec_lists``);
``serve`` answers one request (or a batch, for message blocks) from those lists and the
customer's own history; ``evaluate`` measures each strategy on a time-split holdout.
docs/recommendations.md has the maths and the decisions.
"""
