"""sfox-exporter: a Prometheus exporter for sFOX account balances."""

__version__ = "0.2.0"
