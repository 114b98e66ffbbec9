#!/usr/bin/env bash
# Set up .venv, then compress and decompress a real photo shipped with scikit-image
# (no download) and compare with Pillow's optimised PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
photo=$(.venv/bin/python -c 'import pathlib, skimage.data; print(pathlib.Path(skimage.data.__file__).parent / "astronaut.png")')
mkdir -p demo-out
.venv/bin/idfc compress -f -v "$photo" -o demo-out/astronaut.idf
.venv/bin/idfc info demo-out/astronaut.idf
.venv/bin/idfc decompress -f demo-out/astronaut.idf -o demo-out/astronaut.png
.venv/bin/python - "$photo" demo-out/astronaut.idf demo-out/astronaut.png <<'PY'
import io, sys
import numpy as np
from PIL import Image
original, idf, decoded = sys.argv[1:]
pixels = np.asarray(Image.open(original))
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, "PNG", optimize=True)
idf_bytes = len(open(idf, "rb").read())
png_bytes = len(buffer.getvalue())
same = np.array_equal(np.asarray(Image.open(decoded)), pixels)
print(f"astronaut.png {pixels.shape[1]}x{pixels.shape[0]}: idfc {idf_bytes} bytes "
      f"({8 * idf_bytes / pixels.size:.3f} bits/subpixel), optimised PNG {png_bytes} bytes "
      f"({8 * png_bytes / pixels.size:.3f}); decoded image identical: {same}")
sys.exit(0 if same else 1)
PY
