"""Training and evaluation of EMERT on recorded sessions and on the EMER dataset layout.

Modules (the first two import without torch):

- :mod:`emer_live.training.dataset` - samples (whole-trial and sliding windows) with ER/FER
  labels from recorded sessions, the per-session window cache, participant splits, and the torch
  ``Dataset``/collate built on them (torch imported only when those are used).
- :mod:`emer_live.training.emer_dataset` - the same samples from the official EMER dataset
  layout (eye-movement tables through a declared column map, aligned faces or face videos, the
  label spreadsheet and ``emer_set.txt``).
- :mod:`emer_live.training.train` - ``emer-live train``: grouped K-fold by participant, cosine
  LR decay, early stopping, resumable, DistributedDataParallel under ``torchrun``.
- :mod:`emer_live.training.evaluate` - ``emer-live evaluate``: WAR/UAR/weighted F1, MAE/MSE/RMSE,
  confusion matrices (JSON and PNG), per fold and mean +- sd.
- :mod:`emer_live.training.commands` - the two sub-commands.
"""
