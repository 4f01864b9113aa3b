"""What an app receives about a user: the field schema (built-in and admin-defined fields), the formula language
(CEL), and the release of attributes, NameID values and claims. Framework-free: plain data in, plain data out;
the SAML and OIDC flows, the preview, the CLI and the console share it."""
