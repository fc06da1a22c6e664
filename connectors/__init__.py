"""Ways events enter respublica: HTTP push, Kafka ingest, pull connectors, simulators.

In: provider payloads (JSON, Avro). Out: validated Avro records on ``raw.<c>.<s>`` or
dead-letter records on ``dlq.<c>.<s>``. Start reading at ``connectors/base.py``.
"""
