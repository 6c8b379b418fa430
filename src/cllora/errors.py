"""The one exception type for user mistakes: the CLI prints its sentence and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user (a value, a path, a name). The message is one sentence naming it."""


class RunFailed(RuntimeError):
    """A run could not go on (e.g. every sampled client diverged); what was written is kept."""
