"""Experiment configs: each module's get_config() returns a ConfigDict (no logic here)."""
