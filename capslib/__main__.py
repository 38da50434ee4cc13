import sys

from capslib.cli.main import main

sys.exit(main())
