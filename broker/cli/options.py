"""Options every command shares: where Kafka is (``--bootstrap``, ``--kafka-config``) and how
to log (``--log-level``, ``--log-format``). Light on imports, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from broker.logs import FORMATS, LEVELS, configure_logging

if TYPE_CHECKING:
    from broker.kafka.settings import KafkaSettings


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap`` and ``--kafka-config`` (see ``broker/kafka/settings.py``)."""
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: "
        "$RESPUBLICA_KAFKA_BOOTSTRAP, $KAFKA_BOOTSTRAP, the --kafka-config file, "
        "or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--kafka-config",
        metavar="FILE",
        help="YAML client settings: bootstrap, security_protocol, "
        "sasl_mechanism, username, password, ssl_cafile... "
        "(RESPUBLICA_KAFKA_* variables override it)",
    )


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The settings the command's options and the environment name."""
    from broker.kafka.settings import KafkaSettings  # noqa: PLC0415 - pydantic is slow to import

    return KafkaSettings.load(
        getattr(args, "kafka_config", None), bootstrap=getattr(args, "bootstrap", None)
    )


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format`` for a long-running command."""
    parser.add_argument(
        "--log-level", default="info", choices=LEVELS, help="log level (default info)"
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=FORMATS,
        help="text for a terminal, json lines for a log pipeline (default text)",
    )


def setup_logging(args: argparse.Namespace) -> None:
    """Apply ``--log-level``/``--log-format``."""
    configure_logging(args.log_level, args.log_format)


def add_heartbeat_options(parser: argparse.ArgumentParser) -> None:
    """``--heartbeat-interval`` and ``--heartbeat-margin`` (validator and gateway)."""
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="write a watermark heartbeat to every raw partition this often, so windows close "
        "on time when partitions are quiet (0: never; default 5)",
    )
    parser.add_argument(
        "--heartbeat-margin",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="a heartbeat's floor is now - allowed lateness - this margin, for records of "
        "other writers still in flight (default 2)",
    )
