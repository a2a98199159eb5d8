import sys

from sfox_exporter.cli import main

sys.exit(main())
