"""Test plans run by the harness."""
