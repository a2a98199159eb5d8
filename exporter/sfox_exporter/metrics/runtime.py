"""The process and Python metrics of /metrics, rendered cheaply on every scrape.

Same names, help, types and values as prometheus_client's ProcessCollector and PlatformCollector
(tests/test_runtime.py compares them), but what never changes is read once: the boot time, the
open-files limit, the Python version. A scrape then costs one read of /proc/self/stat and a count of
/proc/self/fd, where ProcessCollector reads three files and formats through generate_latest. These
values change on every scrape, so they are the one part of /metrics that cannot be cached.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

_PROCESS = (
    ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."),
    ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
    ("process_open_fds", "gauge", "Number of open file descriptors."),
    ("process_max_fds", "gauge", "Maximum number of open file descriptors."),
)


class RuntimeMetrics:
    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._stat = proc / "self" / "stat"
        self._fd = proc / "self" / "fd"
        self._available = self._stat.exists()
        self._ticks = os.sysconf("SC_CLK_TCK") if self._available else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if self._available else 4096
        self._boot_time = self._read_boot_time()
        self._max_fds = float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        info = ",".join(f'{key}="{value}"' for key, value in (
            ("implementation", platform.python_implementation()),
            ("major", platform.python_version_tuple()[0]),
            ("minor", platform.python_version_tuple()[1]),
            ("patchlevel", platform.python_version_tuple()[2]),
            ("version", platform.python_version()),
        ))
        self._python_info = f"python_info{{{info}}} 1.0\n"

    def render(self, as_openmetrics: bool) -> bytes:
        values = self._process_values()
        lines = []
        for (name, kind, help_text), value in zip(_PROCESS, values, strict=False):
            family = name.removesuffix("_total") if as_openmetrics and kind == "counter" else name
            lines.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n{name} {float(value)!r}\n")
        lines.append("# HELP python_info Python platform information\n# TYPE python_info gauge\n")
        lines.append(self._python_info)
        return "".join(lines).encode()

    def _process_values(self) -> list[float]:
        if not self._available:
            return []
        try:
            fields = self._stat.read_bytes().rsplit(b")", 1)[1].split()
            open_fds = len(os.listdir(self._fd))
        except OSError:
            return []
        # /proc/self/stat, counted from the field after the command name: see proc(5).
        utime, stime, start, vsize, rss = (float(fields[i]) for i in (11, 12, 19, 20, 21))
        return [vsize, rss * self._page, start / self._ticks + self._boot_time,
                (utime + stime) / self._ticks, float(open_fds), self._max_fds]

    def _read_boot_time(self) -> float:
        try:
            for line in (self._proc / "stat").read_text().splitlines():
                if line.startswith("btime"):
                    return float(line.split()[1])
        except OSError:
            pass
        return 0.0
