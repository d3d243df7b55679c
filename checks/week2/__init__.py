"""Week 2's hidden checks (days 2.1, 2.2, 2.4, 2.6): one module per day, dayW_D.py."""
