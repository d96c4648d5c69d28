"""One exception hierarchy for everything trtlab refuses, each message naming the culprit and the fix."""
from __future__ import annotations


class TrtlabError(Exception):
    """Base class of every error trtlab raises on purpose."""


class ModelError(TrtlabError):
    """The ONNX model is missing, unreadable, invalid or cannot be run as given."""


class ModelTooLargeError(ModelError):
    """The model exceeds protobuf's 2 GB limit and has no external data."""


class UnsupportedOpsetError(ModelError):
    """The model's opset is newer than the installed runtime can execute."""


class DynamicShapeError(ModelError):
    """An input has unknown dimensions that must be given (batch=, shapes=).

    `cli_message` says the same with the command line's flags (--shapes, --dims, --batch) as the fix."""

    def __init__(self, message: str, cli_message: str | None = None):
        super().__init__(message)
        self.cli_message = cli_message or message


class InputError(TrtlabError):
    """Input data with wrong names, shapes or dtypes."""


class RunError(InputError):
    """An inference failed inside the runtime (e.g. ONNX Runtime stopped in a node); names the engine and node."""


class LossyCastError(InputError):
    """An input's values would change when cast to the dtype the model takes (wrap-around, overflow to inf)."""


class ConfigError(TrtlabError):
    """A build or analysis option that is invalid or conflicts with another."""


class UnknownOptionError(ConfigError):
    """A keyword argument that is no build option of the backend (a typo, or an option of another backend)."""


class UsageError(ConfigError):
    """A command-line argument that cannot be read (the `trtlab` command prints it and exits 2)."""


class BackendUnavailableError(TrtlabError):
    """The requested backend or provider is not installed or has no device here."""


class PrecisionNotSupportedError(TrtlabError):
    """The backend cannot run the requested precision (e.g. fp8 without the kernel)."""


class BuildError(TrtlabError):
    """Building an engine failed (parser errors, builder failure)."""


class ParserError(BuildError):
    """The ONNX parser rejected nodes; `.table` lists node, op type, code and message."""

    def __init__(self, message: str, table: object = None) -> None:
        super().__init__(message)
        self.table = table


class EngineClosedError(TrtlabError):
    """An engine was used after close() (or after a sweep or tune released it)."""


class CompareError(TrtlabError):
    """Reference and candidate cannot be compared tensor by tensor (one lacks tensors the other has)."""


class CancelledError(TrtlabError):
    """A long operation was cancelled by the user."""


class CalibrationError(TrtlabError):
    """Calibration data or a calibration cache is invalid."""


class CalibrationCacheError(CalibrationError):
    """A calibration cache file is truncated, has a bad header or non-hex values."""


class PlanError(TrtlabError):
    """A serialized engine (plan) is missing, truncated or incompatible."""


class PlanMetadataError(PlanError):
    """The metadata saved beside a plan disagrees with the engine's own I/O, or the engine has I/O trtlab cannot pass."""


class PlanMismatchError(PlanError):
    """A plan was built by another library version or for another GPU."""


class CudaError(TrtlabError):
    """A CUDA runtime call failed; the message names the CUDA error."""


class WorkspaceError(TrtlabError):
    """The workspace folder or one of its records is unusable."""


class TrtexecFormatError(TrtlabError):
    """A trtexec export file is not in the format trtexec writes."""


class ExtraNotInstalledError(TrtlabError):
    """An optional part of trtlab (the lab UI, the HTML report) is used but its extra is not installed."""


class CalibrationWarning(UserWarning):
    """A calibration table that may be poor: too few samples for a histogram method, or tensors clipped heavily."""


class WorkerLostError(TrtlabError):
    """A Ray worker died while it ran a trial (killed, out of memory, its node lost): nothing it measured is kept."""
