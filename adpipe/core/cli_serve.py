"""PLACEHOLDER: the `adpipe serve` command (being written)."""
