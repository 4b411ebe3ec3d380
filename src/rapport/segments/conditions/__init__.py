"""One module per family of condition types; each type gives its SQL and its Python test."""
