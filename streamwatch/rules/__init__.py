"""Rules: question templates, their conditions, and loading them from `rules/*.toml`."""
