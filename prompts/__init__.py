"""Prompt templates and in-context demos as data files, one folder per method (see `load`)."""
