"""``python -m onnxpipe_runtime.serve MODEL ...`` (same as ``onnxpipe serve``)."""

import sys

from onnxpipe_runtime.serve.cli import main

sys.exit(main())
