"""The exporter's configuration: one typed, validated, immutable object, and the API keys it names.

schema.py declares the file once; validate.py is how that declaration is checked; loader.py adds the
environment and the command line; keys.py reads API keys, carefully, as often as feeds need them.
"""

from sfox_exporter.config.keys import MAX_KEY_FILE_BYTES, KeyLoader, KeyLoadError, KeySource, Secret
from sfox_exporter.config.loader import Overrides, demo_thresholds, environment, load_config, parse_listen_address
from sfox_exporter.config.schema import (
    AccountConfig,
    AccountKind,
    AuthFlag,
    Config,
    EndUsersConfig,
    FeedConfig,
    LogConfig,
    SfoxEndpoints,
    Threshold,
    ValuationConfig,
    WebConfig,
    schema_keys,
)
from sfox_exporter.config.validate import ConfigError

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "AccountConfig",
    "AccountKind",
    "AuthFlag",
    "Config",
    "ConfigError",
    "EndUsersConfig",
    "FeedConfig",
    "KeyLoadError",
    "KeyLoader",
    "KeySource",
    "LogConfig",
    "Overrides",
    "Secret",
    "SfoxEndpoints",
    "Threshold",
    "ValuationConfig",
    "WebConfig",
    "demo_thresholds",
    "environment",
    "load_config",
    "parse_listen_address",
    "schema_keys",
]
