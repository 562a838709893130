"""Widgets of the composite TUI."""
