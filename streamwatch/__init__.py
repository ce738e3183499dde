"""streamwatch: watch many cameras with a vision-language model."""

__version__ = "0.1.0"
