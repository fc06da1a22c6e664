"""A minimal faust-streaming app for the harness test: upper-cases raw bytes."""

import os

import faust

from broker.kafka.settings import KafkaSettings

app = faust.App(
    "respublica-harness-echo",
    **KafkaSettings.load(bootstrap=os.environ["ECHO_BOOTSTRAP"]).faust(),
    value_serializer="raw",
    key_serializer="raw",
    store="memory://",
    datadir=os.environ["ECHO_DATADIR"],
    topic_allow_declare=False,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["ECHO_SOURCE"], value_serializer="raw", key_serializer="raw")
sink = app.topic(os.environ["ECHO_SINK"], value_serializer="raw", key_serializer="raw")


@app.agent(source)
async def echo(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        await sink.send(key=key, value=value.upper())


if __name__ == "__main__":
    app.main()
