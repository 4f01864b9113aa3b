"""Framework-free SAML 2.0 protocol core: bindings, request parsing, response building, signing, metadata."""
