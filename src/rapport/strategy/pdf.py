"""The document as a PDF, written in Python alone (fpdf2): nothing to install on a server.

The text is set in DejaVu Sans, which matplotlib ships with its own files, so Cyrillic
comes out right on any machine without a system font. The same sections as the HTML
file: a cover, a table of contents with page numbers and links (and the PDF's outline),
tables that carry their header over a page break, the rules in words, each journey map
as vector graphics scaled to the page, and the messages chart as an image.
"""

from __future__ import annotations

import io
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from fpdf import FPDF
from fpdf.enums import TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace

from rapport.analytics.message_charts import trend_chart
from rapport.strategy.pdf_svg import for_pdf
from rapport.strategy.present import (
    Chart,
    Document,
    Heading,
    Map,
    Paragraph,
    RuleWords,
    Section,
    Table,
)

FONT = "dejavu"
FONT_DIR = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
PX = 25.4 / 96  # one CSS pixel in millimetres
ACCENT = (59, 91, 219)
MUTED = (97, 110, 124)
INK = (31, 41, 51)
HEADER_FILL = (240, 243, 248)


class _Pdf(FPDF):
    def __init__(self, document: Document) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.document = document
        self.add_font(FONT, "", os.path.join(FONT_DIR, "DejaVuSans.ttf"))
        self.add_font(FONT, "B", os.path.join(FONT_DIR, "DejaVuSans-Bold.ttf"))
        self.set_margins(16, 16, 16)
        self.set_auto_page_break(True, margin=16)
        self.set_title(document.title + (f" — {document.shop}" if document.shop else ""))
        self.set_creator("Rapport")
        self.set_lang(document.language)

    def footer(self) -> None:
        if self.page_no() == 1:
            return  # the cover
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(*MUTED)
        left = self.document.title + (f" — {self.document.shop}" if self.document.shop else "")
        self.cell(0, 5, left, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, str(self.page_no()), align="R")
        self.set_text_color(*INK)


@contextmanager
def _quiet_svg() -> Iterator[None]:
    """fpdf2 logs each SVG element it skips; the maps' are known and harmless."""
    log = logging.getLogger("fpdf.svg")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _cover(pdf: _Pdf, doc: Document) -> None:
    pdf.add_page()
    pdf.set_y(90)
    pdf.set_font(FONT, "B", 30)
    pdf.set_text_color(*ACCENT)
    pdf.multi_cell(0, 14, doc.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    if doc.shop:
        pdf.set_font(FONT, "", 18)
        pdf.multi_cell(0, 10, doc.shop, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)
    pdf.set_font(FONT, "", 12)
    pdf.set_text_color(*MUTED)
    for line in (doc.period, doc.generated):
        pdf.multi_cell(0, 7, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)


def _contents(pdf: FPDF, outline: list[Any]) -> None:
    """The table of contents, drawn once every section's page is known."""
    assert isinstance(pdf, _Pdf)
    pdf.set_xy(pdf.l_margin, pdf.t_margin)
    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 12, pdf.document.contents, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    pdf.set_font(FONT, "", 12)
    for section in outline:
        if section.level != 0:
            continue
        link = pdf.add_link(page=section.page_number)
        width = pdf.epw - 20
        pdf.cell(width, 9, section.name, link=link)
        pdf.cell(20, 9, str(section.page_number), align="R", link=link)
        pdf.ln(9)


def _section(pdf: _Pdf, number: int, section: Section, *, new_page: bool = True) -> None:
    if new_page:
        pdf.add_page()
    title = f"{number}. {section.title}"
    pdf.start_section(title, level=0)
    pdf.set_font(FONT, "B", 18)
    pdf.set_text_color(*ACCENT)
    pdf.multi_cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*ACCENT)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.set_text_color(*INK)
    pdf.ln(4)
    for block in section.blocks:
        _block(pdf, block)


def _block(pdf: _Pdf, block: Any) -> None:
    if isinstance(block, Heading):
        if pdf.will_page_break(40):
            pdf.add_page()
        pdf.ln(3)
        pdf.start_section(block.text, level=1)
        pdf.set_font(FONT, "B", 12)
        pdf.multi_cell(0, 7, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    elif isinstance(block, Paragraph):
        if not block.text:
            return
        pdf.set_font(FONT, "", 9 if block.note else 10)
        pdf.set_text_color(*(MUTED if block.note else INK))
        pdf.multi_cell(0, 5.5, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*INK)
        pdf.ln(2)
    elif isinstance(block, Table):
        _table(pdf, block)
    elif isinstance(block, RuleWords):
        pdf.set_font(FONT, "", 10)
        for depth, text in block.lines:
            pdf.set_x(pdf.l_margin + 6 * depth)
            pdf.multi_cell(0, 5.5, f"• {text}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    elif isinstance(block, Map):
        _map(pdf, block)
    elif isinstance(block, Chart):
        image = trend_chart(block.rows, "png", pdf.document.language)
        width = pdf.epw
        if pdf.will_page_break(width * 4.5 / 8 + 10):
            pdf.add_page()
        pdf.image(io.BytesIO(image), x=pdf.l_margin, w=width)
        _caption(pdf, block.caption)


def _table(pdf: _Pdf, block: Table) -> None:
    pdf.set_font(FONT, "", 9)
    align = tuple("RIGHT" if i in block.numeric else "LEFT" for i in range(len(block.columns)))
    with pdf.table(
        text_align=align,
        headings_style=FontFace(emphasis="BOLD", fill_color=HEADER_FILL),
        cell_fill_mode=TableCellFillMode.NONE,
        line_height=5,
        padding=1.5,
        first_row_as_headings=True,
        repeat_headings=1,
        borders_layout="HORIZONTAL_LINES",
        col_widths=block.widths,
    ) as table:
        table.row(block.columns)
        for values in block.rows:
            table.row(values)
    pdf.ln(3)


def _map(pdf: _Pdf, block: Map) -> None:
    root = ET.fromstring(block.svg)
    width = float(root.get("width", "600")) * PX
    height = float(root.get("height", "400")) * PX
    room = pdf.h - pdf.t_margin - pdf.b_margin - 14  # a whole page less the caption
    scale = min(1.0, pdf.epw / width, room / height)
    width, height = width * scale, height * scale
    if pdf.will_page_break(height + 8):
        pdf.add_page()
    with _quiet_svg():
        pdf.image(
            io.BytesIO(for_pdf(block.svg, FONT)),
            x=pdf.l_margin + (pdf.epw - width) / 2,
            w=width,
            h=height,
        )
    _caption(pdf, block.caption)


def _caption(pdf: _Pdf, text: str) -> None:
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(0, 5, text, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.ln(4)


def render_pdf(document: Document) -> bytes:
    pdf = _Pdf(document)
    _cover(pdf, document)
    pdf.add_page()
    # The contents are drawn on this page at the end; the call breaks to the next one,
    # where the first section starts.
    pdf.insert_toc_placeholder(_contents, pages=1)
    for number, section in enumerate(document.sections, start=1):
        _section(pdf, number, section, new_page=number > 1)
    return bytes(pdf.output())
