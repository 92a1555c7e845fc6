"""The command-line tools (python tools/NAME.py, or python -m tools.NAME from the checkout)."""
