"""The PyQt6 + pyqtgraph desktop app (DESIGN sec. 16). Qt lives only in this package; everything
it shows comes from the run layer (:mod:`emer_live.app`)."""
