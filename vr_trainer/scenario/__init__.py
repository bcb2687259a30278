"""Scenario files: schema, loading with located errors."""

from vr_trainer.scenario.loader import ScenarioError, default_scenario_path, load_scenario
from vr_trainer.scenario.schema import Scenario

__all__ = ["Scenario", "ScenarioError", "default_scenario_path", "load_scenario"]
