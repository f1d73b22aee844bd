"""Start the studio: `python app.py [--host H] [--port P] [--data-dir D] [--share]` (same as `studio serve`).

On a Hugging Face Space it needs no arguments: see studio/space.py and the README's "Deploy as a Space".
"""

import sys

from studio.space import prepare_environment

if __name__ == "__main__":
    prepare_environment()  # on a Space with storage, the model cache goes to its volume (before any HF import)
    from studio.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
