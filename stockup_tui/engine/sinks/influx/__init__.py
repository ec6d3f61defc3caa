"""InfluxDB as a sink, one module per job: `sink.py` (the buffer and the sink's own thread:
connect, drain, figures), `writers.py` (v1 and v2 writes with retries), `http.py` (the small
HTTP client: ping, v1 writes, database creation, secrets kept out of messages), `lines.py`
(snapshots and figures as line protocol)."""
