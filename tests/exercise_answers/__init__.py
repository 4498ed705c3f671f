"""Solutions to the course's exercises, for tests/test_exercise_checks.py: in each chapter module, WRONG maps an
exercise number to plausible wrong solutions (each must fail its check) and RIGHT to correct ones written
differently from the library (each must pass)."""
