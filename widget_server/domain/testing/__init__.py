"""Persona test suites: the suite file, its runner, assertions, reports and stored runs (issue 15)."""
