"""Names and thresholds of the knee and hip arthroplasties that the metric registry needs at import time
(kept apart from the geometry so that validating a scenario does not load trimesh)."""

BALANCED_MM = 2.0  # |medial - lateral| within this: a rectangular gap (a common clinical target, from memory)
ANGLES = ("distal_varus", "distal_flexion", "tibial_varus", "tibial_slope", "femoral_rotation")  # the readouts
THA_ANGLES = ("cup_inclination", "cup_anteversion", "reamer_inclination", "reamer_anteversion")  # the hip's readouts
