"""The demo: a synthetic clothing and footwear shop, sent through the real ingest path."""
