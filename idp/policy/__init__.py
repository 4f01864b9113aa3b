"""Pure access-policy checks and the engine that runs them (no Flask, no models)."""
