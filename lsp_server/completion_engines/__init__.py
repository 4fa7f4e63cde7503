"""Completion engines that guide repair decoding (Repilot): they run next to the user's code."""

from lsp_server.completion_engines.base import CompletionEngine

__all__ = ["CompletionEngine"]
