"""Channel backends behind one interface, the way Django's mail backends are."""
