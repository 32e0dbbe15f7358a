"""The one user-facing error type of the engine.

Everything a user can cause (a bad file, an unknown model, missing weights, a cancelled job)
raises a `BlindUpscaleError` whose message is one plain sentence: the CLI prints it as
`error: <message>`, the server returns it as `{"error": message}`.
"""


class BlindUpscaleError(Exception):
    """An error the user can act on; `str(err)` is the sentence to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(BlindUpscaleError):
    """The image or a request parameter is unusable (corrupt file, bad region, too large, ...)."""


class ModelError(BlindUpscaleError):
    """The model id or configuration is unknown, or the model cannot run the request."""


class WeightsError(BlindUpscaleError):
    """Weights are missing, unreadable or do not fit the architecture."""


class Cancelled(BlindUpscaleError):
    """The job was cancelled by the user between two steps."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)


class InputWarning(UserWarning):
    """The input was usable only after a repair the user should hear about (the CLI prints it as
    `warning: <message>`)."""
