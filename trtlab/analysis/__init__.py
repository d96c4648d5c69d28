"""Analyses: each takes engines (through the Backend/Engine contract) and returns data."""
