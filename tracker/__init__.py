"""The tracker: users, groups, shared files and who holds which pieces."""
