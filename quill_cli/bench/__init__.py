"""`quill bench ...`: benchmarks that compare paths side by side in one run and report ratios."""
