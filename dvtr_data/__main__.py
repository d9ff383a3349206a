"""`python -m dvtr_data` runs the CLI."""

from dvtr_data.cli import main

main()
