"""The account console: the professional's record, password change and reset."""
