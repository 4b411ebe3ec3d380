"""`python -m rapport.cli`."""

from rapport.cli import main

main()
