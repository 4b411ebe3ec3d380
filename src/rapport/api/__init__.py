"""The HTTP face: thin routers that parse, call the domain and answer."""
