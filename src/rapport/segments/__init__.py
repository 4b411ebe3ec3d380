"""Segments: a rule tree over the customer card, evaluated in SQL and in memory.

Every condition type lives in one module under ``conditions/`` and gives both a SQL
builder and an in-memory test, so the compiler (counts, lists, sweeps) and the real-time
evaluator (one customer per event) cannot drift apart; ``tests/test_segments_agree.py``
checks that they do not.
"""
