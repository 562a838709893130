"""The `composite` command line (Typer). Each file holds one command or command group."""
