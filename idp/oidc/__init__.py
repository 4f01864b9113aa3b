"""Framework-free OpenID Connect / OAuth 2.0 core: JOSE with the IdP key store, token claims, JWKS, discovery."""
