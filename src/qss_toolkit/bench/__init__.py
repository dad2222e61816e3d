"""`bench`: its sections and their runner, flush-on-reconnect latency, `status` on a big queue."""
