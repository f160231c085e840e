"""Memories: modules whose state is written at test time or carried across segments."""
