"""vr_trainer: VR training and remote mentoring for orthopaedic surgery."""

__version__ = "0.1.0"
