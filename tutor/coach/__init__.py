"""The Socratic coach: the hint ladder, the offline engine, LLM backends and the
solution-leak guardrail."""
