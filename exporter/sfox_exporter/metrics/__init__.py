"""From balances to Prometheus: the shared state, the metric table, the collector and the exposition."""
