"""Try Quill here: `quill complete examples/fibonacci.py:4:18` completes the body."""


def fibonacci(n):
