"""One module per `instructforge` command; `instructforge/cli.py` registers them."""
