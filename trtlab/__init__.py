"""trtlab: analyse and tune deep-learning inference the way TensorRT users do, in JupyterLab or a shell."""
from __future__ import annotations

__version__ = "0.1.0"

from .config import BuildConfig
from .environment import environment
from .errors import TrtlabError
from .model import Model, load_model
from .session import Session

from . import zoo  # noqa: E402  (generated demo models; no download)

__all__ = ["BuildConfig", "Model", "Session", "TrtlabError", "environment", "load_model", "zoo", "__version__"]
