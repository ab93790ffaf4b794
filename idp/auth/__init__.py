"""Sign-in: the login transaction, the password step, SSO sessions."""
