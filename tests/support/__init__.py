"""Test support: real brokers, servers and service harnesses the tests share (not part of the package)."""
