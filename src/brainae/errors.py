"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class BrainaeError(Exception):
    """A problem the user can fix (bad file, bad key, bad value). Message = one line, says what to do."""
