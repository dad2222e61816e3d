"""The smoke tests: targets, their cached roots, container engines, scenarios and the runner."""
