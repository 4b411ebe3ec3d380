"""Message templates: Jinja2 in a sandbox, MJML compiled once per version, Babel filters.

sandbox (limits), filters (money, dates, plural), protect (Jinja through MJML), compile
(save-time checks), plaintext (the text part), render (per recipient), store (the table).
"""
