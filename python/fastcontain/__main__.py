"""python -m fastcontain: the fastcontain command."""

import sys

from .cli import main

sys.exit(main())
