"""Test suites: cases run through the production pipeline, the simulated visitors that drive them, red-team packs."""
