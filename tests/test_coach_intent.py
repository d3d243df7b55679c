"""One ``is_solution_request`` for both coaches, negations included."""

from __future__ import annotations

import pytest

from tutor.coach import chat, offline
from tutor.coach.intent import is_solution_request

ASKS = [
    "Please show me the solution.", "just give me the code", "Can you write the function for me?",
    "what's the answer", "please just write it", "give me the full implementation",
    "I want the solution", "paste the working code", "I give up, show me the implementation",
    "I don't know, just show me the solution", "No, show me the solution", "full code please",
]
NOT_ASKS = [
    "Don't show me the solution, just a hint", "I do not want the code",
    "I don't need the full code, only a hint", "Please never give me the answer",
    "hint please, not the solution", "How do I write the function?", "is my working code right?",
    "what shape should the answer have?", "How do I solve this?", "how do I do the task?",
    "why is the scale 1/sqrt(D)?", "",
]


@pytest.mark.parametrize("text", ASKS)
def test_explicit_requests(text):
    assert is_solution_request(text)


@pytest.mark.parametrize("text", NOT_ASKS)
def test_negations_and_questions_are_not_requests(text):
    assert not is_solution_request(text)


def test_both_coaches_use_the_one_function():
    assert chat.is_solution_request is is_solution_request
    assert offline.is_solution_request is is_solution_request
