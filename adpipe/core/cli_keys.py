"""PLACEHOLDER: the `adpipe keys` command (being written)."""
