"""This test process's own memory, read from /proc (Linux): what the memory tests measure."""

from __future__ import annotations

from pathlib import Path


def anonymous_resident() -> int:
    """Bytes of anonymous memory resident in this process (RssAnon): its own copies, not the page cache."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")
