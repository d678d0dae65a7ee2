#!/usr/bin/env python3
"""Start AV Studio: ``python main.py [VIDEO] [--model MODEL] [--no-audio]``."""

import sys

if __name__ == "__main__":
    from avstudio.gui.app import main

    sys.exit(main())
