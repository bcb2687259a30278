"""Patient-specific anatomy: CT / label map / mesh import into asset bundles.

No GL here.  Public entry points::

    from vr_trainer.anatomy import load_bundle, AnatomyError
    bundle = load_bundle("assets/spine_l3_s1")

Units everywhere are millimetres in the patient RAS frame.
"""

from .bundle import Bundle, Structure, load_bundle, write_bundle
from .errors import AnatomyError
from .tissues import FACE_BUDGET, TISSUES

__all__ = ["AnatomyError", "Bundle", "Structure", "load_bundle", "write_bundle", "TISSUES", "FACE_BUDGET"]
