"""The bodies of the pipeline's stages, one module per direction of data.

`publish`: source -> bus (parse, flush by size or time, watermarks). `analyze`: bus -> windows ->
sinks. `topics`: what travels on Kafka's shared topics besides trades (the watchlist, process
status, the metrics a monitor shows). `engine/pipeline.py` owns them; `engine/supervisor.py` runs
each as a task that restarts on failure.
"""
