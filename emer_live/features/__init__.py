"""Feature extraction for the three EMERT modalities.

Modules (import what you need; this package imports nothing heavy by itself):

- :mod:`emer_live.features.eye` - the 39 eye features per sample and per window step
  (``EYE_FEATURE_NAMES``, ``sample_features``, ``analyse``, ``eye_window``); pre-processing and
  I-VT in :mod:`emer_live.features.ivt`; configuration ``EyeConfig``.
- :mod:`emer_live.features.fixation` - fixation sequence in stimulus coordinates and heatmaps.
- :mod:`emer_live.features.normalise` - ``FeatureStats`` (normalisation stored in checkpoints).
"""
