"""Repair on the language-server side: the Repair RPC client and the name oracles (Jedi) that
guide serving's decoder."""
