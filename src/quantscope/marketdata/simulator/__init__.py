"""A Polygon-compatible aggregates server: deterministic data, realistic latency, injectable faults.

config  latency profiles, faults, the runtime-settable SimulatorConfig
model   the bar model (closed-form prices, sessions, alignment), byte-identical for a request
app     the HTTP app (create_app) and `quantscope simulate` (run_simulator)
"""

from .app import SimulatorState, create_app, run_simulator
from .config import PROFILES, FaultConfig, LatencyProfile, SimulatorConfig
from .model import bar_grid, generate_bars, results_bytes

__all__ = ["PROFILES", "FaultConfig", "LatencyProfile", "SimulatorConfig", "SimulatorState", "bar_grid",
           "create_app", "generate_bars", "results_bytes", "run_simulator"]
