"""Screens of the composite TUI (one per file)."""
