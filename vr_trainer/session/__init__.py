"""Session recording and replay: the MCAP format (:mod:`.format`), the writer thread
(:mod:`.writer`) and the reader that accepts cut-short and damaged files (:mod:`.reader`).
No GL, no display: the app wires these into the frame loop (``vr_trainer.app.recording``,
``vr_trainer.app.replay``)."""
