"""Shared by the bench scripts: append a dated, host-stamped section to bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> str:
    """One line naming the host and the versions that matter for the numbers."""
    versions = ", ".join(f"{name} {_version(name)}" for name in ("duckdb", "sqlglot", "celery"))
    return (
        f"host {platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}), "
        f"Python {sys.version.split()[0]}, {versions}"
    )


def record(title: str, lines: list[str]) -> None:
    """Append `## title` with the date, the environment and `lines` (Markdown) to RESULTS.md."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [f"## {title}", "", f"_{stamp}; {environment()}_", "", *lines, ""]
    new_file = not RESULTS.exists()
    with RESULTS.open("a", encoding="utf-8") as out:
        if new_file:
            out.write("# Benchmark results\n\nAppended by the scripts in bench/.\n\n")
        out.write("\n".join(section) + "\n")
