"""Guided repair (Repilot): sample candidate patches for a region of a file, with a completion
engine that runs in the client pruning tokens that cannot continue any known name."""
