"""The catalog: products, categories and which categories go together."""
