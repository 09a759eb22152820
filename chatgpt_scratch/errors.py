"""The one exception type for errors a user can cause and fix.

Its message is a single line that says what went wrong and what to do; the CLI
prints it without a traceback and the TUI shows it as a notification.
"""


class ScratchError(Exception):
    """A user-fixable problem: missing file, bad data, wrong checkpoint kind, ..."""
