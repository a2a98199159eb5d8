"""Render /metrics: Prometheus text or OpenMetrics, gzip when asked, cached between changes.

This is the scrape hot path. The sfox_* families are formatted here rather than by
prometheus_client's generate_latest, for a measured win: after a balance change this renders 5.7x
(10 currencies, 100 Web3 wallets) to 30x (1,000 wallets) faster (benchmarks/scrape.py, "changed"),
because the label part of every series is escaped once and kept, an account's families whose source
objects are all unchanged (table.MetricDef.source) are reused line for line, and the whole body is
reused while the state version stays the same. Tests check that the output parses to exactly the
samples prometheus_client's own encoders produce from the Collector (collector.py), and that after
any sequence of changes it is byte for byte what a renderer without caches writes.

Everything else on /metrics (process, platform and GC metrics, and whatever an embedder registers)
comes from a CollectorRegistry, rendered by prometheus_client's own encoder on every scrape, since
those values change on every read. Its output is appended after the cached part; for OpenMetrics
it carries the one `# EOF` line that must end the body.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from operator import is_
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from sfox_exporter.build import build_labels
from sfox_exporter.metrics.state import Snapshot, State
from sfox_exporter.metrics.table import BUILD_INFO, METRICS, MetricDef, Sample

log = logging.getLogger("sfox_exporter.metrics")

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_1_0 = "application/openmetrics-text; version=1.0.0;"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Level 1 compresses metrics text about 8:1 at a fraction of the CPU of the default level 9.
GZIP_LEVEL = 1
# Prefixes and blocks of series that no longer exist are dropped when a cache outgrows the live ones.
CACHE_SLACK = 2
_SOURCED = sum(1 for metric in METRICS if metric.source is not None)  # families cached as blocks


@dataclass(frozen=True)
class Rendered:
    """A response body in parts, written one after another: the large cached part is never copied."""

    parts: tuple[bytes, ...]
    content_type: str
    content_encoding: str | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class _Cached:
    version: int
    body: bytes
    generation: int = 0  # of the redactor it was scrubbed with
    # gzip of `body` so far, and the compressor's state right after it, which a scrape copies to
    # append the registry's output: one valid gzip stream without compressing the body again.
    gzip_prefix: bytes = b""
    gzip_state: Any = None


class Exposition:
    def __init__(self, state: State, version: str, registry: CollectorRegistry | None = None, *,
                 extra: Callable[[Collection[str]], list[bytes]] | None = None,
                 metrics: tuple[MetricDef, ...] = METRICS, redactor: LabelRedactor | None = None) -> None:
        """`registry` holds the other collectors (process, platform, GC): rendered afresh on each
        scrape and never cached. It must not hold the sfox_* families, which are rendered here.
        `extra` renders more cached families from the state (the per-user end-user series,
        endusers_render.py), given the withdrawn accounts; its parts follow the table's. `metrics`
        is the table rendered: table.METRICS, unless a test gives another. `redactor` blanks the API
        keys from label values, which come from sFOX (logs.Redactor.scrub)."""
        self._state = state
        self._metrics = metrics
        self._extra = extra
        self._redactor = redactor
        self._redacted_at = redactor.generation if redactor is not None else 0
        self._version = version
        self._registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._cache: dict[bool, _Cached] = {}
        self._prefixes: dict[tuple[str, tuple[str, ...]], str] = {}  # escaped once per series
        # Per metric with a `source`, and account: the source objects last rendered and their lines. A
        # balance change re-renders the balance families of its account; its Web3 wallets, say, not.
        self._blocks: dict[tuple[str, str], tuple[tuple[object, ...], list[str]]] = {}
        self._failing: set[str] = set()  # metrics whose rendering raised, logged once until it works

    def render(self, accept: str | None = None, accept_encoding: str | None = None) -> Rendered:
        encoder, content_type = _negotiated(accept or "")
        as_openmetrics = content_type.startswith("application/openmetrics-text")
        if not as_openmetrics and content_type.startswith("text/plain; version=0.0.4"):
            content_type = TEXT_CONTENT_TYPE
        elif as_openmetrics and not content_type.startswith(OPENMETRICS_1_0):
            # prometheus_client echoes whatever version was asked for ("2.0.0", or junk); the body
            # is OpenMetrics 1.0.0 all the same, and says so.
            content_type = OPENMETRICS_CONTENT_TYPE
        cached = self._cached(as_openmetrics)
        # The same encoder as the content type, so the tail is in the format announced; for
        # OpenMetrics it ends in the body's one `# EOF`.
        tail = encoder(self._registry)
        if not gzip_accepted(accept_encoding or ""):
            return Rendered((cached.body, tail), content_type)
        with self._lock:
            if cached.gzip_state is None:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
                cached.gzip_prefix = compressor.compress(cached.body)
                cached.gzip_state = compressor
            compressor = cached.gzip_state.copy()
        return Rendered((cached.gzip_prefix, compressor.compress(tail) + compressor.flush()), content_type, "gzip")

    def _cached(self, as_openmetrics: bool) -> _Cached:
        version = self._state.version()
        with self._lock:
            cached = self._cache.get(as_openmetrics)
        if cached is not None and cached.version == version and cached.generation == self._generation():
            return cached
        snapshot = self._state.snapshot()
        body = self._format(snapshot, as_openmetrics).encode()
        if self._extra is not None:
            body = b"".join([body, *self._extra([view.name for view in snapshot.accounts if view.withdrawn])])
        cached = _Cached(snapshot.version, body, generation=self._redacted_at)
        with self._lock:
            self._cache[as_openmetrics] = cached
        return cached

    def _generation(self) -> int:
        return self._redactor.generation if self._redactor is not None else 0

    def _format(self, snapshot: Snapshot, as_openmetrics: bool) -> str:
        lines: list[str] = []
        series = 0
        blocks = self._blocks
        if self._redactor is not None and self._redactor.generation != self._redacted_at:
            # A key was loaded: series escaped before may hold it.
            self._redacted_at = self._redactor.generation
            self._prefixes.clear()
            blocks.clear()
        for metric in self._metrics:
            start = len(lines)
            try:
                lines.append(_header(metric, as_openmetrics))
                series += self._family(metric, snapshot, lines)
            except Exception:  # a bug in one family must not take every other one off /metrics (logged)
                del lines[start:]
                if metric.name not in self._failing:
                    log.exception("cannot render %s; it is left out of /metrics until it can be", metric.name)
                self._failing.add(metric.name)
            else:
                self._failing.discard(metric.name)
        lines.append(_header(BUILD_INFO, as_openmetrics))
        lines.append(_series_prefix(BUILD_INFO.name, BUILD_INFO.labels, build_labels(self._version)) + "1.0")
        if len(self._prefixes) > CACHE_SLACK * series + 64:
            self._prefixes.clear()
        if len(blocks) > CACHE_SLACK * _SOURCED * len(snapshot.accounts):
            blocks.clear()  # accounts removed by a reload
        lines.append("")
        return "\n".join(lines)

    def _family(self, metric: MetricDef, snapshot: Snapshot, lines: list[str]) -> int:
        """Append the samples of one metric; returns how many. Cached blocks are stored only once
        written whole, so a failure leaves none half-made."""
        if metric.whole is not None:
            return self._write(metric, metric.whole(snapshot), lines)
        series = 0
        blocks = self._blocks
        for view in snapshot.accounts:
            if metric.source is None:
                series += self._write(metric, metric.samples(view), lines)
                continue
            objects = metric.source(view)
            key = (metric.name, view.name)
            block = blocks.get(key)
            if block is None or len(block[0]) != len(objects) or not all(map(is_, block[0], objects)):
                # Identity, never ==: equal is not the same (-0.0 == 0.0), the same object is.
                start = len(lines)
                self._write(metric, metric.samples(view), lines)
                block = blocks[key] = (objects, lines[start:])
            else:
                lines.extend(block[1])
            series += len(block[1])
        return series

    def _write(self, metric: MetricDef, samples: Iterable[Sample], lines: list[str]) -> int:
        """Append the samples' lines; returns how many."""
        prefixes = self._prefixes
        name = metric.name
        written = 0
        for labels, value in samples:
            key = (name, labels)
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = _series_prefix(name, metric.labels, labels, self._redactor)
            text = repr(float(value))
            lines.append(prefix + (text if text[-1].isdigit() else _NON_FINITE[text]))
            written += 1
        return written


# Both formats spell them so; repr's "inf" is no OpenMetrics number. An account worth more than a
# float holds (balances near 1e308 times a price) is +Inf.
_NON_FINITE = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def _header(metric: MetricDef, as_openmetrics: bool) -> str:
    name = metric.family_name if as_openmetrics else metric.name
    return f"# HELP {name} {metric.help}\n# TYPE {name} {metric.type}"


def _series_prefix(name: str, label_names: tuple[str, ...], label_values: tuple[str, ...],
                   redactor: LabelRedactor | None = None) -> str:
    if not label_names:
        return f"{name} "
    if redactor is not None:
        label_values = tuple(map(redactor.scrub, label_values))
    pairs = ",".join(
        f'{label}="{escape_label_value(value)}"' for label, value in zip(label_names, label_values, strict=True)
    )
    return f"{name}{{{pairs}}} "


class LabelRedactor(Protocol):
    """What blanks API keys from label values (logs.Redactor)."""

    @property
    def generation(self) -> int: ...

    def scrub(self, value: str) -> str: ...


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _negotiated(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    """prometheus_client's choice of format for an Accept header. Its parser raises on a version that
    is not a number, quoted ones included (version="1.0.0", valid HTTP): such a header is read
    again without quotes, and failing that answered in the text format. It also reads no q-values,
    so OpenMetrics refused with q=0 (RFC 9110 12.4.2) is left out first."""
    accept = ",".join(kind for kind in accept.split(",") if not _refused(kind))
    for header in (accept, accept.replace('"', "")):
        try:
            return choose_encoder(header)
        except (TypeError, ValueError):
            continue
    return choose_encoder("")


def _refused(media_range: str) -> bool:
    """Whether one media range of an Accept header has a weight of zero ("q=0", "q=0.000")."""
    for parameter in media_range.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip().strip('"')) == 0
            except ValueError:
                return False
    return False
