"""Exception types. Every message is one line that names the file or value and the problem."""


class PTILabError(Exception):
    """Base class of the errors pti-lab raises on bad input."""


class CheckpointError(PTILabError, ValueError):
    """A checkpoint file could not be read, is hostile, or does not fit the network."""


class WeightsNotFoundError(PTILabError, FileNotFoundError):
    """Pretrained weights are neither configured, cached, nor downloadable."""


class BadInputError(PTILabError, ValueError):
    """An image, tensor or option has the wrong shape, range or type."""


class NonFiniteLossError(PTILabError, ArithmeticError):
    """An optimisation's loss became NaN or inf; that image stops, the run goes on."""

    def __init__(self, message: str, images: tuple[int, ...] = ()):
        super().__init__(message)
        self.images = tuple(images)  # rows of an optimisation of several images whose own loss did; () = unknown


class MissingExtraError(PTILabError, ImportError):
    """A feature needs an optional package that is not installed; the message names the pip extra."""


class DiskFullError(PTILabError, OSError):
    """An output could not be written for lack of space: the run stops (every later write would fail
    too); what was written before is whole, and a re-run after freeing space resumes."""
