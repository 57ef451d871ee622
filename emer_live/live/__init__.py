"""Live recognition: sliding windows -> EMERT worker -> predictions with the emotion gap."""
