"""Recipe steps: one module per recipe section (its config, how it runs, its report section), in one ordered
registry (kit.steps.registry.STEPS)."""
