"""`python -m dvtr_data.cli` runs the CLI (as `python -m dvtr_data` does)."""

from dvtr_data.cli.app import main

main()
