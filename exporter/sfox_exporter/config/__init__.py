"""The exporter's configuration: one typed, validated, immutable object, and the API keys it names."""

from sfox_exporter.config.loader import (
    _SCHEMA,
    AccountConfig,
    Config,
    ConfigError,
    FeedConfig,
    KeySource,
    LogConfig,
    Overrides,
    Secret,
    SfoxEndpoints,
    Threshold,
    WebConfig,
    demo_thresholds,
    environment,
    load_config,
    parse_listen_address,
)

__all__ = [
    "_SCHEMA",
    "AccountConfig",
    "Config",
    "ConfigError",
    "FeedConfig",
    "KeySource",
    "LogConfig",
    "Overrides",
    "Secret",
    "SfoxEndpoints",
    "Threshold",
    "WebConfig",
    "demo_thresholds",
    "environment",
    "load_config",
    "parse_listen_address",
]
