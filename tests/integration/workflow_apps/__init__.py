"""Workflow modules that the integration tests serve with real `cairn worker run` processes."""
