"""The command line; the only part of envpack that prints."""
