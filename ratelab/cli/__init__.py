"""The ``ratelab`` command line: argument parsing, commands, text tables, TOML files, the demo."""
