"""The hook a procedure's rules plug into the simulation (``Simulation.procedure``).

A :class:`ProcedureModel` runs inside :meth:`~vr_trainer.sim.simulation.Simulation.step`, twice per
fixed step, and keeps its own state in ``SimState.procedure_state`` (an immutable value it made with
:meth:`~ProcedureModel.initial_state`), so the simulation stays a pure function of (state, input, dt):

1. :meth:`~ProcedureModel.move`, after the active instrument has been put where the hand holds it:
   the procedure may constrain it (bone stops a needle, an exchange slides the next instrument over
   the guidewire, a saw stays in its slot) and move or hide the others. It returns what it changed
   plus discrete actions (``bone_contact`` ...) and haptic pulses.
2. :meth:`~ProcedureModel.observe`, once the step's :class:`~vr_trainer.sim.observation.Observation`
   is measured: it may add to it (``removed_pct``, ``values``, ``angles_deg``, actions) for the
   scenario engine and its metrics.

Pure numpy; no GL, device or network code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from vr_trainer.frame import HandInput
    from vr_trainer.sim.instruments import InstrumentState
    from vr_trainer.sim.observation import Observation
    from vr_trainer.sim.simulation import HapticRequest, SimState


@dataclass(frozen=True)
class MoveResult:
    """What :meth:`ProcedureModel.move` decided for one step."""

    instruments: tuple[InstrumentState, ...]
    procedure_state: Any
    actions: frozenset[str] = frozenset()
    haptics: tuple[HapticRequest, ...] = ()
    notes: Sequence[str] = field(default_factory=tuple)  # free text for logs and tests


class ProcedureModel(Protocol):
    """A procedure's rules inside the fixed step (see the module docstring)."""

    def initial_state(self) -> Any:
        """The procedure's state before the first step (immutable; stored in ``SimState.procedure_state``)."""
        ...

    def move(self, prev: SimState, instruments: tuple[InstrumentState, ...], active: int, hand: HandInput,
             dt_s: float, actions: frozenset[str]) -> MoveResult:
        """Constrain the instruments after the hand moved the active one (``instruments[active]`` is
        already at the hand's pose); ``prev`` is the state before this step, ``actions`` the step's
        discrete actions so far (``next_instrument``, keys)."""
        ...

    def observe(self, procedure_state: Any, obs: Observation, instruments: tuple[InstrumentState, ...],
                active: int) -> tuple[Observation, Any]:
        """Add the procedure's measurements to ``obs``; returns it and the procedure's new state."""
        ...
