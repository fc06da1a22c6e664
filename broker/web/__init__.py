"""``respublica web``: a read-only window on the views a Kafka principal may read.

In: the contracts, and one principal's Kafka credentials (the broker decides what it lists,
``access.py``); each readable view is followed live (``feed.py``). Out: pages with a map, a
time slider, the suppressed share per window, a table and the export files (``server.py``,
``static/``), and an auditor page from ``respublica audit`` (``auditor.py``). Start with
``server.py``.
"""
