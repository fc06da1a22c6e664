"""The pure privacy core: minimise, pseudonymise, generalise, aggregate, suppress (and
secondary suppression across linked views), noise.

In: plain records (dicts) and a contract. Out: window releases with suppression reports.
No Kafka, no clock, no I/O. Start reading at ``policies/base.py``, then ``policies/compile.py``;
``policies/testing.py`` runs a contract over a list of events, without Kafka.
"""
