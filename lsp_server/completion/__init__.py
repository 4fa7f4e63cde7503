"""Inline completion policy on the language-server side: the call in flight, type-ahead, the
single- or multi-line decision and the timing of requests."""
