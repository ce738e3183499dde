"""Where events go: each output (MQTT, the event log, ...) is one file implementing `base.Output`."""
