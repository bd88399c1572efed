"""`python -m aios` runs the CLI."""

from aios.cli import main

main()
