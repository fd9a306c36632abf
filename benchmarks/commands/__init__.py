"""One module per ``bench`` subcommand. Each composes the config from the parsed flags, calls the harness
library below it and reports what it wrote; none imports another command (``tests/test_layout.py``)."""
