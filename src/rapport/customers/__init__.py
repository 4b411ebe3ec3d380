"""The customer card: profile, identities, consents, computed fields, timeline."""
