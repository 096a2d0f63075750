# Kept equal to the repository's VERSION file (tests/test_version.py checks every build's number).
__version__ = "0.1.0"
