"""User-facing errors: what was wrong and what to do, never a traceback."""


class KitError(Exception):
    """An error caused by the user's input (model, data, recipe, device).

    The CLI prints it without a traceback and exits with code 2.
    """

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  hint: {hint}")


class RecipeError(KitError):
    """A recipe file that does not validate."""


class ModelError(KitError):
    """A model file that cannot be loaded or is not supported."""


class DataError(KitError):
    """A data set that is missing, malformed or does not fit the model."""


class TargetError(KitError):
    """A device that cannot be reached, disappeared, or failed a run."""
