"""trtlab: analyse and tune deep-learning inference the way TensorRT users do, in JupyterLab or a shell."""
from __future__ import annotations

from .config import BuildConfig
from .environment import environment
from .errors import TrtlabError
from .model import Model, load_model
from .session import Session
from .version import __version__

from . import zoo  # noqa: E402  (generated demo models; no download)
from .trtexec import load_trtexec  # noqa: E402
from .tables import compare_layers, compare_nodes  # noqa: E402  (engines side by side, by the ONNX nodes they run)


def load_engine(path: str, **kwargs):
    """Load a saved TensorRT plan, refusing one from another TensorRT version or GPU (see its metadata JSON)."""
    from .backends.tensorrt.runtime import load_engine as _load  # TensorRT is imported only when asked for
    return _load(path, **kwargs)

__all__ = ["BuildConfig", "Model", "Session", "TrtlabError", "compare_layers", "compare_nodes", "environment",
           "load_engine", "load_model", "load_trtexec", "zoo", "__version__"]
