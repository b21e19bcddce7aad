"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class BrainaeError(Exception):
    """A problem the user can fix (bad file, bad key, bad value). Message = one line, says what to do."""


def first_line(e: BaseException, default: str = "") -> str:
    """The first line of an exception's message, or ``default`` when it is empty: the detail that a
    one-line error quotes from a library's multi-line one.

    Example:
        >>> first_line(RuntimeError("size mismatch for fc.weight\\n  copying a param ..."), "shapes differ")
        'size mismatch for fc.weight'
    """
    text = str(e).strip()
    return text.splitlines()[0] if text else default
