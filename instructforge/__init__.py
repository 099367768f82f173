"""instructforge command line: one command per module in `instructforge/commands`, registered in `cli.py`.

Nothing imports this package; it imports `engine`, `generators` and `tagger`.
"""

__version__ = "0.1.0"
