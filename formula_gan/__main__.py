import sys

from formula_gan.cli import main

sys.exit(main())
