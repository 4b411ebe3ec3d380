"""Ingest: parse, validate and resolve identity. Calls no segment or scenario code."""
