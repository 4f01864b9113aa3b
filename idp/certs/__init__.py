"""Signing keys: generation, the on-disk key store and its rotation state."""
