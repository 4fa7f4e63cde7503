import sys

from quill_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
