"""Protocol-neutral use cases (sign-in, SSO, logout): they return outcomes; no Flask."""
