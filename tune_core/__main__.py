"""``python -m tune_core``: the ``tune`` command line (see :mod:`tune_core.cli`).

It always runs this project's command, even where another package's ``tune`` script
(Ray Tune ships one) comes first on ``PATH``.
"""

import sys

from tune_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
