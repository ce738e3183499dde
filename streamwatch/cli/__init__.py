"""The `streamwatch` command line (main), with the event and label commands (events, labels)."""
