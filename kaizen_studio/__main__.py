"""`python -m kaizen_studio …`: the same as the `kaizen-studio` command."""

import sys

from kaizen_studio.cli import main

sys.exit(main())
