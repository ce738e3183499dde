"""Eval, fine-tune and release jobs started from the web UI and the REST API: their specs, records and runner."""
