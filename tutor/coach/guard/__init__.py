"""The solution-leak guardrail's parts, bottom up: :mod:`.vocab` (tokens and the tensor
API's words), :mod:`.answerkey` (what the answer key says about a lesson), :mod:`.score`
(judging one piece of code), :mod:`.segment` (finding the pieces of code in a reply) and
:mod:`.nudge` (the question that replaces removed code). The filter on top, and the
public names, are :mod:`tutor.coach.guardrail`."""
