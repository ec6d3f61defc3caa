"""`python -m stockup_tui` is the same as the `stockup-tui` command."""

import sys

from stockup_tui.cli import main

sys.exit(main())
