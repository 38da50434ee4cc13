"""The study's errors. Each one's message says what went wrong and what to do, in one line."""


class OneLineError(Exception):
    """An error whose message says it all: IPython (a notebook, a papermill run) shows it
    as one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConfigError(OneLineError, ValueError):
    """A cell or grid is misconfigured; the message says which field and why."""


class DataError(OneLineError):
    """A dataset is missing, corrupt or truncated; the message says what to do."""
