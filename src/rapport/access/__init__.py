"""Who may do what: API keys now; users, roles and the audit log later."""
