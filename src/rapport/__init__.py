"""Rapport: an open-source CRM-marketing engine."""

__version__ = "0.1.0"
