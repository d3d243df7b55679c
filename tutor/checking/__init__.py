"""Running a day's hidden checks in a child process and collecting their results."""
