"""The `quill` command and its benchmarks: the top layer, which may import every package below."""
