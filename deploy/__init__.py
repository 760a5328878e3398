"""On the workstation: `binbot deploy`, which ships bundles to the service on Raspberry Pis over SSH."""
