"""Per-procedure rules, metrics and autopilot planners, built on :mod:`vr_trainer.sim`.

* :mod:`~vr_trainer.procedures.plan`: the ``Plan`` data types (timed tool keyframes in patient
  RAS mm, timed actions, the instrument per step, seeded errors).
* :mod:`~vr_trainer.procedures.reach`: the generic "reach the targets" planner (clear straight
  paths from the bundle's landmarks and geometry).
* :mod:`~vr_trainer.procedures.autopilot`: plans at a skill level (``expert``, ``novice``,
  ``--autopilot-skill``) with seeded, documented errors.

Procedure modules (``pted``, ``tka``, ``tha``) add their rules, metrics and planners here.
No GL, device or network code: this package imports only scenario, sim, anatomy and frame.
"""

from vr_trainer.procedures import pted_metrics as _pted_metrics  # noqa: E402,F401 - registers PTED's metrics
from vr_trainer.procedures import pted_safety as _pted_safety  # noqa: E402,F401 - registers its metrics
from vr_trainer.procedures import tka_metrics as _tka_metrics  # noqa: E402,F401 - registers TKA's metrics
from vr_trainer.procedures import tha_metrics as _tha_metrics  # noqa: E402,F401 - registers THA's metrics
from vr_trainer.scenario.conditions import register_angles as _register_angles  # noqa: E402
from vr_trainer.procedures.tka_constants import ANGLES as _TKA_ANGLES  # noqa: E402
from vr_trainer.procedures.tka_constants import THA_ANGLES as _THA_ANGLES  # noqa: E402

_register_angles("tka", _TKA_ANGLES)
_register_angles("tha", _THA_ANGLES)
