"""Make the scripts in tools/ importable from the tests (`import student`, `import bench_runners`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
