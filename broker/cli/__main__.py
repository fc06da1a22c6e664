"""``python -m broker.cli``: the same as the ``respublica`` command."""

import sys

from broker.cli import main

sys.exit(main())
