"""Command implementations as plain typed functions; `vsteer.cli` registers them with typer."""
