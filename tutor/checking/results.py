"""The result contract of a check run (what ``check --json`` prints)."""

from __future__ import annotations

from tutor.statuses import FAILING, STATUSES

ICONS = {"pass": "✓", "fail": "✗", "error": "✗", "timeout": "⏱", "crashed": "💥",
         "skipped": "⊘"}


def summarize(checks: list[dict]) -> dict:
    counts = {s: 0 for s in STATUSES}
    for c in checks:
        counts[c["status"]] += 1
    return counts


def day_status(checks: list[dict]) -> str:
    """A day passes when nothing failed and at least one check really passed: a skipped
    check never counts as passed."""
    counts = summarize(checks)
    if any(counts[s] for s in FAILING) or counts["pass"] == 0:
        return "fail"
    return "pass"


def day_result(day: str, impl: str, checks: list[dict], duration_s: float) -> dict:
    return {
        "day": day,
        "impl": impl,
        "status": day_status(checks),
        "duration_s": round(duration_s, 3),
        "checks": checks,
        "summary": summarize(checks),
    }


def with_questions(result: dict, pitfall_questions: dict[str, str]) -> dict:
    """Turn each check's ``pitfall`` id into the contract's ``diagnosis`` object, taking the
    guiding question from the lesson. The child never sees the lesson text."""
    ordered = []
    for c in result["checks"]:
        pit = c.get("pitfall")
        diagnosis = None
        if pit:
            diagnosis = {"pitfall": pit, "question": pitfall_questions.get(
                pit, "Which assumption in your code does this output contradict?")}
        ordered.append({"id": c["id"], "task": c["task"], "title": c["title"],
                        "status": c["status"], "message": c["message"],
                        "evidence": c["evidence"], "diagnosis": diagnosis,
                        "skip_reason": c.get("skip_reason")})
    result["checks"] = ordered
    return result
