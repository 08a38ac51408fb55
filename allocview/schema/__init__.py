"""The JSON Schema of allocview's report document (report.schema.json),
and its validation for readers of reports (`allocview suite`)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["report_schema", "report_problem"]


@lru_cache(maxsize=None)
def report_schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("report.schema.json").read_text())


def report_problem(doc) -> str | None:
    """None when `doc` is a valid report, else the first problem as one
    line naming where it is ("test.name: None is not of type 'string'")."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(report_schema())
    error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "the document"
    return f"{where}: {error.message}"
