"""Retries where a caller can retry: the policy pieces, ``replay`` against a failing gateway
stand-in (503 with and without Retry-After, refused connections, give-up and ``--from-line``),
and ``connect gbfs`` against a failing feed on the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from broker.cli.connect import RETRY_DEFAULTS
from broker.kafka.local import free_port
from connectors.retry import (
    RetryPolicy,
    TransientError,
    retry_after_seconds,
    transient_status,
    with_retries,
)
from tests.connectors.retry_support import (
    Cli,
    StandInFeed,
    StandInGateway,
    ndjson_file,
    run_cli,
    serve,
)

FAST = ["--retry-wait", "0.01", "--retry-wait-max", "0.05"]


# -- the policy -----------------------------------------------------------------------------


def test_cli_defaults_are_the_policy_defaults() -> None:
    policy = RetryPolicy()
    assert RETRY_DEFAULTS == {k: getattr(policy, k) for k in RETRY_DEFAULTS}


@pytest.mark.parametrize(
    ("status", "retried"),
    [(500, True), (502, True), (503, True), (504, True), (429, True), (408, True)]
    + [(400, False), (401, False), (403, False), (404, False), (413, False), (422, False)],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    assert transient_status(status) is retried


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(later, now) == 90.0
    earlier = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(earlier, now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    # A hostile server's non-ASCII digits: unreadable, never a crash (float("²") raises).
    assert retry_after_seconds("²", now) is None
    assert retry_after_seconds("١٢", now) is None


async def test_with_retries_stops_at_the_attempt_limit_and_reraises() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("HTTP 503")

    policy = RetryPolicy(attempts=4, wait_initial_s=0.001, wait_max_s=0.01)
    with pytest.raises(TransientError, match="HTTP 503"):
        await with_retries(failing, policy)
    assert calls == 4


async def test_with_retries_caps_retry_after_and_passes_other_errors() -> None:
    calls = 0

    async def slow_server() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("HTTP 429", retry_after_s=3600.0)
        return "ok"

    policy = RetryPolicy(retry_after_max_s=0.05)
    assert await asyncio.wait_for(with_retries(slow_server, policy), 10) == "ok"

    async def bad_request() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not retryable")

    calls = 0
    with pytest.raises(ValueError, match="not retryable"):
        await with_retries(bad_request, RetryPolicy())
    assert calls == 1


# -- replay against a gateway stand-in ------------------------------------------------------


def _replay(source: Path, port: int, *extra: str) -> list[str]:
    return [
        "replay",
        str(source),
        "--contract",
        "lyon-micromobility",
        "--stream",
        "vehicle_events",
        "--to-gateway",
        f"http://127.0.0.1:{port}",
        "--token",
        "t0ken",
        "--batch",
        "10",
        *FAST,
        *extra,
    ]


def _in_the_future(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "min_gap_s"),
    [
        ({}, 0.0),
        ({"Retry-After": "1"}, 0.9),
        # An HTTP date has whole seconds: 2 s from now is at least 1 s away.
        ({"Retry-After": "date"}, 0.9),
    ],
    ids=["no-retry-after", "retry-after-seconds", "retry-after-date"],
)
async def test_replay_retries_503_and_every_event_lands_once(
    tmp_path: Path, headers: dict[str, str], min_gap_s: float
) -> None:
    source = tmp_path / "events.ndjson"
    ndjson_file(source, 95)

    def plan(number: int) -> tuple[int, dict[str, str]] | None:
        if number in (1, 4, 5):  # the first batch, then the third one twice
            sent = {k: _in_the_future(2) if v == "date" else v for k, v in headers.items()}
            return 503, sent
        return None

    gateway = StandInGateway(plan)
    port = free_port()
    runner = await serve(gateway.app(), port)
    try:
        code, err = await run_cli(*_replay(source, port))
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert sorted(gateway.accepted) == [f"e-{i:04d}" for i in range(95)]
    assert [s for _, s in gateway.requests].count(503) == 3
    gap = gateway.requests[1][0] - gateway.requests[0][0]
    assert gap >= min_gap_s
    assert "95 accepted" in err and "3 transient failures retried" in err


async def test_replay_caps_a_long_retry_after(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    ndjson_file(source, 5)
    gateway = StandInGateway(lambda n: (429, {"Retry-After": "3600"}) if n == 1 else None)
    port = free_port()
    runner = await serve(gateway.app(), port)
    try:
        code, err = await run_cli(*_replay(source, port, "--retry-after-max", "0.2"), timeout_s=30)
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert len(gateway.accepted) == 5


async def test_replay_rides_out_a_refused_connection(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    ndjson_file(source, 30)
    port = free_port()  # nothing listens there yet
    cli = await Cli.start(*_replay(source, port, "--retry-attempts", "1000"))
    await cli.wait_for_err("did not answer")  # a refused connection was retried
    gateway = StandInGateway()
    runner = await serve(gateway.app(), port)
    try:
        code, err = await cli.finish()
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert sorted(gateway.accepted) == [f"e-{i:04d}" for i in range(30)]


async def test_replay_gives_up_with_the_line_to_resume_and_from_line_resumes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "events.ndjson"
    numbers = ndjson_file(source, 57)
    # Two batches of 10 are taken, then the gateway stays unavailable.
    failing = StandInGateway(lambda n: (503, {}) if n > 2 else None)
    port = free_port()
    runner = await serve(failing.app(), port)
    try:
        code, err = await run_cli(*_replay(source, port, "--retry-attempts", "3"))
    finally:
        await runner.cleanup()
    resume = numbers[20]  # the line of the 21st event, first of the third batch
    assert code == 1
    assert f"resume with --from-line {resume}" in err
    assert len(failing.requests) == 2 + 3
    assert failing.accepted == [f"e-{i:04d}" for i in range(20)]

    healthy = StandInGateway()
    port = free_port()
    runner = await serve(healthy.app(), port)
    try:
        code, err = await run_cli(*_replay(source, port, "--from-line", str(resume)))
    finally:
        await runner.cleanup()
    assert code == 0, err
    landed = Counter(failing.accepted + healthy.accepted)
    assert landed == Counter(f"e-{i:04d}" for i in range(57))  # nothing lost, nothing twice


async def test_replay_does_not_retry_a_client_error(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    ndjson_file(source, 25)
    gateway = StandInGateway(lambda _n: (400, {}))
    port = free_port()
    runner = await serve(gateway.app(), port)
    try:
        code, err = await run_cli(*_replay(source, port))
    finally:
        await runner.cleanup()
    assert code == 1
    assert len(gateway.requests) == 3  # one per batch, none repeated
    assert "rejected: NOT_NOW=25" in err


# -- connect against a feed stand-in, on the real broker ------------------------------------


def _connect(port: int, bootstrap: str, *extra: str) -> list[str]:
    return [
        "connect",
        "gbfs",
        f"http://127.0.0.1:{port}/free_bike_status.json",
        "--provider-id",
        "stand-in",
        "--contract",
        "lyon-micromobility",
        "--bootstrap",
        bootstrap,
        "--min-interval",
        "0",
        *FAST,
        *extra,
    ]


async def test_connect_keeps_polling_after_refused_connections_and_503(
    kafka_bootstrap: str,
) -> None:
    port = free_port()  # nothing listens there yet
    cli = await Cli.start(*_connect(port, kafka_bootstrap, "--polls", "4"))
    await cli.wait_for_err("cannot fetch the feed")  # refused, and retried
    feed = StandInFeed(lambda n: (503, {"Retry-After": "0"}) if n in (1, 3) else None)
    runner = await serve(feed.app(), port)
    try:
        code, err = await cli.finish()
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert "gbfs: 4 polls" in err
    assert feed.requests == [503, 200, 503, 200, 200, 200]


async def test_connect_gives_up_and_says_how_to_resume(kafka_bootstrap: str) -> None:
    feed = StandInFeed(lambda n: (502, {}) if n > 1 else None)
    port = free_port()
    runner = await serve(feed.app(), port)
    try:
        code, err = await run_cli(
            *_connect(port, kafka_bootstrap, "--polls", "5", "--retry-attempts", "3")
        )
    finally:
        await runner.cleanup()
    assert code == 1
    assert feed.requests == [200, 502, 502, 502]
    assert "gbfs: gave up after --retry-attempts 3" in err
    assert "the feed: HTTP 502" in err
    assert "the last complete poll was at 20" in err
    assert "run the same command again" in err
