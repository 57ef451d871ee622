"""The synthetic participant ("phantom"): a known truth to measure the instrument against.

:class:`Phantom` (in :mod:`.participant`) models one participant's emotional state over trials
and free-running segments, the eyes that follow it (gaze, pupil, blinks, tracking loss; fed to
:class:`~emer_live.devices.synthetic.SyntheticTracker`) and the face (:class:`FaceState`, drawn by
the synthetic camera). Truth goes to ``truth.tsv`` (:mod:`.truth`), never to the recognizer.
"""

from .face_state import EMOTIONS7, FaceState
from .participant import Phantom, TrialTruth
from .traits import PhantomTraits, VA_ANCHORS, draw_traits
from .truth import TRUTH_COLUMNS, read_truth

__all__ = ["Phantom", "TrialTruth", "FaceState", "EMOTIONS7", "PhantomTraits", "VA_ANCHORS", "draw_traits",
           "TRUTH_COLUMNS", "read_truth"]
