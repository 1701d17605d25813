"""`python -m tagflow.cli`: the same as the `tagflow` command."""

from tagflow.cli.entry import main

main()
