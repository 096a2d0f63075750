import sys

from onnxpipe_runtime.cli import main

sys.exit(main())
