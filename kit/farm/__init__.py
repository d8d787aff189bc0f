"""Device farm: inventory, concurrent profiling, results store, selection, report and app-build export."""
