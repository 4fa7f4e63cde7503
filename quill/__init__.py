"""Quill: an open, self-hostable backend for AI code authoring."""

__version__ = "0.1.0"
