"""The smoke scenarios: the registry and `ScenarioContext`, one module per family of scenarios."""
