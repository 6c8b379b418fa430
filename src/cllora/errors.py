"""The exception types for user mistakes (the CLI prints the sentence and exits with code 2) and
failed runs, and how much of a foreign error message ours quote."""


class UserError(ValueError):
    """Bad input from the user (a value, a path, a name). The message is one sentence naming it."""


class RunFailed(RuntimeError):
    """A run could not go on (e.g. every sampled client diverged); what was written is kept."""


MESSAGE_CHARS = 300  # the most of a library's or a client's error message that ours quote


def brief(message: object, limit: int = MESSAGE_CHARS) -> str:
    """The first non-empty line of an error or a text, cut to `limit` characters: what a one-line
    error or log entry quotes of a (often multi-line) foreign message; an exception without text
    gives its type's name."""
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    if lines:
        return lines[0][:limit]
    return type(message).__name__ if isinstance(message, BaseException) else ""
