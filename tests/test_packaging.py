"""A regular (non-editable) wheel carries everything the package finds at run time: plugin sources and CMake, the
zoo, the report schema, the Jetson bundle's build script."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_package_data(tmp_path):
    # No build isolation: the test extra brings setuptools, so the build needs no package index.
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*command, str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("ntc_export-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for tracked in ("plugins/CMakeLists.txt", "plugins/include/ntc/bc7.h", "plugins/host/bc_host.cpp",
                    "plugins/kernels/bc_decode.cu", "plugins/trt/exports.map", "toolchain/report/schema.json",
                    "toolchain/backend/trt/jetson_build_engine.py", "models/zoo/bcae_x16.pt"):
        installed = tracked.replace("toolchain/", "ntc_export/").replace("models/", "ntc_export/models/", 1)
        installed = installed.replace("plugins/", "ntc_export/plugins/", 1)
        assert installed in names, f"{tracked} is missing from the wheel (as {installed})"
    zoo = {p.name for p in (REPO / "models" / "zoo").glob("*.pt")}
    assert {Path(n).name for n in names if n.startswith("ntc_export/models/zoo/")} >= zoo
    assert not any("/build/" in n or n.endswith(".so") for n in names), "build outputs leaked into the wheel"
