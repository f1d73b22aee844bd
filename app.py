"""Start the studio: `python app.py [--host H] [--port P] [--data-dir D] [--share]` (same as `studio serve`)."""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
