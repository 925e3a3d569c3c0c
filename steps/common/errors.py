"""The one error type a step raises for bad input or a failed dependency."""


class StepError(Exception):
    """A user-facing failure: one line that says what is wrong and how to fix it.

    The CLI prints it as ``error: <message>`` and exits non-zero; tracebacks are for bugs only.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
