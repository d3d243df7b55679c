"""Records: the learner's progress state, tracker and session docs.

Stdlib only (plus markdown-it-py, loaded when a session doc is merged) and UI-free (no
textual, rich, mlx or yaml), so the CLI and the check runner can import it cheaply.

- :mod:`tutor.records.state`    -- ``StateStore``: progress/state.json, locked and atomic
- :mod:`tutor.records.schema`   -- that file's layout: empty state, validation, parsing
- :mod:`tutor.records.lock`     -- progress/.lock, one tutor per workspace
- :mod:`tutor.records.mastery`  -- day status and mastery rules, ``rules_text()``
- :mod:`tutor.records.tracker`  -- progress/tiny-llm-tracker.md
- :mod:`tutor.records.sessions` -- sessions/weekN/dayN.M-topic.md, block merge
- :mod:`tutor.records.atomic`   -- ``atomic_write_text``
"""

from tutor.records._util import fmt_duration
from tutor.records.atomic import atomic_write_text
from tutor.records.mastery import Assessment, Mastery, Status, assess, rules_text
from tutor.records.sessions import merge_blocks, write_session_doc
from tutor.records.state import CorruptState, StateError, StateLocked, StateStore, read_state
from tutor.records.tracker import render_tracker, write_tracker

__all__ = [
    "StateStore",
    "StateError",
    "StateLocked",
    "CorruptState",
    "read_state",
    "Status",
    "Mastery",
    "Assessment",
    "assess",
    "rules_text",
    "render_tracker",
    "write_tracker",
    "write_session_doc",
    "merge_blocks",
    "atomic_write_text",
    "fmt_duration",
]
