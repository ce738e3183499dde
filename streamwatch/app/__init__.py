"""`streamwatch run` put together: the composition root (service: builds the parts and enters them), live
reconfiguration (live), config.toml watched while running (config_watch), periodic loops
(housekeeping) and the process's lifetime (lifecycle: signals, stop)."""
