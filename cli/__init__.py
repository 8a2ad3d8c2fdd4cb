"""The ``nasflow`` command line: argument parsing, progress and printing, no logic of its own."""
