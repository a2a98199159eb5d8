"""--web.config.file: TLS and basic auth in the Prometheus exporter-toolkit format (to come)."""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError


def load_web_config(path: Path) -> None:
    raise ConfigError(f"--web.config.file: {path}: not supported yet")
