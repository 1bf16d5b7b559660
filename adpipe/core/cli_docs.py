"""PLACEHOLDER: the `adpipe docs` command (being written)."""
