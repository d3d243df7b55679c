"""One line on why the records could not be written, for the CLI and the app alike."""

from __future__ import annotations

from pathlib import Path

from tutor.records.state import StateError


def records_trouble(exc: Exception, ws: Path | None) -> str:
    """Why writing failed: a read-only folder, a full disk, a newer tutor's state.json.
    The path is shown relative to the workspace, where the learner can find it."""
    if isinstance(exc, StateError):
        return str(exc).replace("\n", " ")
    where = exc.filename if isinstance(exc, OSError) and exc.filename else None
    if where and ws is not None:
        try:
            where = str(Path(where).resolve().relative_to(Path(ws).resolve()))
        except ValueError:
            pass
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"the records could not be written ({why}{f': {where}' if where else ''})."
