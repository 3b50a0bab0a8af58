"""`python -m hpo` runs the CLI."""

from hpo.commands import main

main()
