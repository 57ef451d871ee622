"""Collection sessions: stimulus library, trial plans, SAM answers and ER labels, participant IDs,
and the session controller that runs them."""
