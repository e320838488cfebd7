"""Runners: how one agent's OS process is started (sim, command, claude)."""
