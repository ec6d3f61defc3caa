"""Apache Kafka as the bus (kafka-python), one module per client role.

`bus.py` is the asyncio face the pipeline sees (`KafkaBus`); `producer.py` publishes through a
bounded outbox on its own thread; `consumer.py` reads in a consumer group, commits with the
analyzer's checkpoints and recovers on every assignment; `member.py` claims a static member id;
`watch.py` reads the control, status and metrics topics; `metrics.py` writes the snapshots for
monitors; `common.py` holds the client settings and the hand-over from a client thread to the
event loop.
"""
