"""Load and save the golden cases: NQL in, DuckDB SQL out (`golden.yaml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GOLDEN_FILE = Path(__file__).with_name("golden.yaml")


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line SQL reads best as a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _string)


def load_cases(path: Path = GOLDEN_FILE) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return cases


def save_cases(cases: list[dict[str, Any]], path: Path = GOLDEN_FILE) -> None:
    header = (
        "# Golden NQL -> DuckDB SQL cases; each also runs on DuckDB over generated data.\n"
        "# Regenerate the `sql`/`kind`/`columns` fields: UPDATE_GOLDEN=1 pytest tests/nql\n"
    )
    body = yaml.dump(cases, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
