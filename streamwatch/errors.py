"""Every error streamwatch raises on purpose, in one hierarchy. Each one's message is meant for a person:
it names the file and line, the field or the request that caused it, and says what to change; no
traceback, no secret. Code that catches one of them logs or returns that message.

    StreamwatchError
    ├── ConfigurationError          what was configured cannot work (exit 2 at start, refused at reload)
    │   ├── DataFileError           a config or rule file: every problem as `file:line: field: message`
    │   └── StartupError            the service cannot start as configured (a port taken, a model missing)
    ├── InputError (ValueError)     an input from outside refused as given
    │   ├── ImageRejected           bytes that are not an image streamwatch will decode (or too large)
    │   └── SearchError             a search that cannot be run as given
    ├── SourceError                 a camera source cannot be opened or read (credentials redacted)
    │   └── StallError              packets may arrive, but no frame was decoded for too long
    ├── InferenceError (RuntimeError)  one model call failed; other requests are unaffected
    ├── DroppedError                a request the queue did not answer (deadline, overflow, shutdown)
    ├── AdapterError                an adapter that cannot be applied to the model
    ├── NotifyError                 a receiver did not take a notification (it stays queued)
    └── Refused                     an operator's request that cannot be done as asked
        ├── JobRefused              a job that cannot start, be cancelled or applied
        ├── ShadowRefused           a candidate that cannot run in shadow
        ├── NotApplied              a change the release gate or the live slot did not make live
        └── FinetuneError           no adapter can be trained from these examples

Errors of one module's own (a remote server's error, the HTTP API's `ApiError`) subclass these.
"""

from __future__ import annotations

from collections.abc import Sequence


class StreamwatchError(Exception):
    """The root: a message for a person, safe to show and log."""


class ConfigurationError(StreamwatchError):
    """What was configured cannot work; the message says what to change."""


class DataFileError(ConfigurationError):
    """One or more problems in a data file, each `file:line: field: message`."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class StartupError(ConfigurationError):
    """The service cannot start as configured; the message says what to change."""


class InputError(StreamwatchError, ValueError):
    """An input from outside (a request, an upload, a search) refused as given."""


class ImageRejected(InputError):
    """The bytes are not an image streamwatch will decode; `too_large` for size limits (HTTP 413)."""

    def __init__(self, message: str, *, too_large: bool = False, which: str = "") -> None:
        super().__init__(message)
        self.too_large = too_large
        self.which = which  # "image 2 of 3" when a request holds several


class SearchError(InputError):
    """A search that cannot be run as given (too long); the message says why."""


class SourceError(StreamwatchError):
    """A source could not be opened or read; the message is safe to log (credentials redacted)."""


class StallError(SourceError):
    """Packets may still arrive, but no frame was decoded for too long (the watchdog fired)."""


class InferenceError(StreamwatchError, RuntimeError):
    """A model call failed for this request (the service log says why); other requests are unaffected."""


class DroppedError(StreamwatchError):
    """A request the queue did not answer; `reason` says why (deadline, overflow, shutdown)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"request dropped ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class AdapterError(StreamwatchError):
    """An adapter directory that cannot be applied to the model, and why."""


class NotifyError(StreamwatchError):
    """The receiver did not take the notification (Apprise said so); it stays queued and is retried."""


class Refused(StreamwatchError):
    """An operator's request that cannot be done as asked; the message says why."""


class JobRefused(Refused):
    """The job cannot start (or be cancelled, applied) as asked; the message says why."""


class ShadowRefused(Refused):
    """Why a candidate cannot start (one runs already, it does not load, ...)."""


class NotApplied(Refused):
    """The change cannot be made live as asked; the message says why."""


class FinetuneError(Refused):
    """Why no adapter can be trained (said on stderr, exit 2)."""
