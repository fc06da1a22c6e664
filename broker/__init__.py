"""respublica runtime: the imperative shell around the pure policy core.

In: contracts (from ``contracts``) and a Kafka cluster. Out: running workers, a gateway,
topics and ACLs that match the contracts. Start reading at ``broker/cli/__init__.py``
(every command), then ``broker/kafka/local.py`` (the local broker used by ``make test`` and
``make demo``).
"""
