"""Untrusted text (model, node, tensor, engine and file names) made inert where it becomes markup.

Names come from the model file, a trtexec export or a received workspace, so they may hold
`<img src=x onerror=...>`. Every `_repr_html_`, widget HTML value, report heading and plotly label
passes them through one of these functions; nothing else in trtlab escapes by hand.
"""
from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    """`value` as HTML text (element content or a quoted attribute): & < > " ' escaped."""
    return html.escape(str(value), quote=True)


def plot_text(value: Any) -> str:
    """`value` as plotly text (titles, hover labels, legend entries, tick labels, annotations).

    plotly turns <b>, <a href=...>, <span style=...>, <br> ... in any of these into markup and decodes
    &amp; &lt; &gt; and numeric entities only, so those three are escaped and quotes are left as they are.
    """
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_cell(value: Any) -> str:
    """`value` as the text of a markdown table cell: no HTML (markdown renders tags) and no column breaks."""
    return plot_text(value).replace("|", "\\|").replace("\n", " ")


__all__ = ["esc", "markdown_cell", "plot_text"]
