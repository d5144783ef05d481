"""Errors a user can act on. The CLI prints them as one line, never a traceback."""


class CepoError(Exception):
    """Base of every error cepo reports to a user; `hint` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ModelError(CepoError):
    """The model file is missing, not GGUF, too large for memory, or failed to load."""


class BackendError(CepoError):
    """A generation request failed in the backend. A method run loses the candidate it was for; the run
    fails only when every candidate does."""


class GenerationError(BackendError):
    """The request itself cannot be served: it can never fit the context, or the server refused it."""


class BackendUnavailable(BackendError):
    """A remote backend failed: it could not be reached, kept failing after retries, or broke off or
    garbled an answer."""


class BackendTimeout(BackendUnavailable):
    """A remote backend stayed silent longer than its timeout."""
