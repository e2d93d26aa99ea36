"""`python -m envpack` runs the CLI."""

from envpack.cli.main import main

main()
