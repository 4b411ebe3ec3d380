"""Bulk import of customers, orders, products and events from CSV or JSON Lines.

Rows become the same Segment-style messages the API receives and go through the pipeline,
so an imported customer or order is indistinguishable from one sent by an SDK. See
docs/import.md for the formats and the all-or-nothing rule.
"""

from rapport.ingest.importers.readers import FORMATS, ImportFileError
from rapport.ingest.importers.run import KINDS, ImportReport, import_file

__all__ = ["FORMATS", "KINDS", "ImportFileError", "ImportReport", "import_file"]
