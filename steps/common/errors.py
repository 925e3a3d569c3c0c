"""The one error type a step raises for bad input or a failed dependency."""

from steps.common.secrets import scrub


class StepError(Exception):
    """A user-facing failure: one line that says what is wrong and how to fix it.

    The CLI prints it as ``error: <message>`` and exits non-zero; tracebacks are for bugs only. The message
    goes through :func:`~steps.common.secrets.scrub`: a value echoed back (a URI with ``user:pass@``, a token
    from the environment) never reaches a log or a record through an error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(scrub(" ".join(str(message).split())))
