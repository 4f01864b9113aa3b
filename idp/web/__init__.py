"""HTTP glue: blueprints that decode requests, call one use case, and render."""
