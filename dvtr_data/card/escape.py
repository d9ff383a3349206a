"""Escaping untrusted text (captions, categories, names) for Markdown: for the card and the export README."""

from __future__ import annotations

import html
import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~])")


def md_escape(value: Any) -> str:
    """Text safe inside Markdown (tables included): one line, HTML entities, Markdown punctuation escaped."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
