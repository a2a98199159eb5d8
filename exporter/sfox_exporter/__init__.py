"""sfox-exporter: a Prometheus exporter for sFOX account balances."""
