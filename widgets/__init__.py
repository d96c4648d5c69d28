"""trtlab.widgets: the ipywidgets layer (installed as a subpackage of trtlab by pyproject's package-dir mapping)."""
