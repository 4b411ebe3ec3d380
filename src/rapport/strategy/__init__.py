"""The CRM-strategy document: what a CRM team files with its management.

Segments with their sizes and rules in words, the active and paused scenarios with their
journey maps and figures, the key figures of a period with their definitions, the
communication policy and the loyalty programme, as one printable HTML file or a PDF, in
Russian or English (docs/strategy.md).

It reads several domains (segments, scenarios, analytics, messaging, loyalty) and writes
none, so it is a package of its own above them rather than a part of ``analytics``, which
would otherwise import scenario drawing, the policy and the loyalty programme.

- ``collect``  gathers the content as plain data, for a period and a language
- ``present``  turns it into titled sections of typed blocks (tables, maps, rules in words)
- ``html``     the sections as a self-contained HTML document (a Jinja template)
- ``pdf``      the same sections as a PDF (fpdf2, the DejaVu font that matplotlib ships)
- ``language`` the translate function and the number and date formats of one language
- ``words``    every English text the document shows (the UI's catalog translates them)
"""

from __future__ import annotations

from rapport.strategy.collect import StrategyContent, collect
from rapport.strategy.export import FORMATS, LOCALES, MEDIA_TYPES, export, file_name
from rapport.strategy.language import Language

__all__ = [
    "FORMATS",
    "LOCALES",
    "MEDIA_TYPES",
    "Language",
    "StrategyContent",
    "collect",
    "export",
    "file_name",
]
