"""The ``eigendspy`` command (typer): one module per command group, one-line errors for users."""

from eigendspy.cli.app import app, main

__all__ = ["app", "main"]
