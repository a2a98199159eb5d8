"""The HTTP side: the server, its routes and exporter-toolkit web config (TLS and basic auth)."""
