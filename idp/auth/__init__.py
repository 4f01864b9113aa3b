"""Authentication: password hashing, login sessions, login views."""
