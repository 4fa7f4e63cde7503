"""`quill` subcommands, one module each."""
