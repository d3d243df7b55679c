"""The tutor's full-screen app (Textual). Nothing in the core imports this package.

``tutor.tui.app.TutorApp`` is the app; :func:`run` opens it over an open
:class:`tutor.engine.TutorSession`. Heavy modules (mlx, the LLM SDKs) are never imported
here: checks run in a child process and the coach is built lazily in a worker thread.
"""

from __future__ import annotations


def run(session) -> int:
    from tutor.tui.app import TutorApp

    app = TutorApp(session)
    app.run()
    return app.return_code or 0
