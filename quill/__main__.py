"""`python -m quill ...`: the entry point editors' configs may name; the command itself lives in
the top layer (quill_cli), which this shim is the one module of `quill` allowed to import."""

import sys

from quill_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
