"""`python -m lamina` runs the CLI."""

from lamina.cli import main

main()
