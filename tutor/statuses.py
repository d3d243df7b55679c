"""The statuses a check ends with, named once for every layer that reads them.

The check runner writes them (the result contract, :mod:`tutor.checking.results`), the
records count the failures, the coach and the app react to them: so they live here, at
the bottom of the layers, and nowhere else.
"""

STATUSES = ("pass", "fail", "error", "timeout", "crashed", "skipped")

# The statuses of a check that did not pass. A skip is neither: it never fails a day, and
# never passes one either (see tutor.checking.results.day_status).
FAILING = ("fail", "error", "timeout", "crashed")
