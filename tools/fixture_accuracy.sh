#!/bin/sh
# The fixture's accuracy report (README "Accuracy of every format"): every format, fp32 and int8, through emo-eval
# on the full Fashion-MNIST test split (10,000 images), next to the PyTorch checkpoint.
#   sh tools/fixture_accuracy.sh            (after `make venv` and `python -m emo.fashion_mnist --out out/fashion_mnist`)
# Calibration: 256 images of the *training* split, every 215th in sorted order (all ten classes), never a test image.
# Core ML artifacts are exported with --batch 50 for this run only: the MIL interpreter (NumPy) is then ~10x faster
# per image; the program is the same per image. QNN runs on the HTP simulator (0.19-0.23 s per image here: 31 min
# for int8 and 38 min for w8a16 over the 10k split); QNN_LIMIT=1000 evaluates the first 1,000 images (balanced) only.
set -eu
BIN=${BIN:-.venv/bin}
DATA=${DATA:-out/fashion_mnist}
OUT=${OUT:-out/fixture_accuracy}
CKPT=${CKPT:-tests/fixtures/emo_1m_fashion_mnist.pth}
rm -rf "$OUT"
mkdir -p "$OUT/calibration"
"$BIN/python" - "$DATA/train" "$OUT/calibration" <<'EOF'
import shutil, sys
from pathlib import Path
files = sorted(Path(sys.argv[1]).rglob("*.png"))[::215][:256]
for f in files:
    shutil.copy(f, Path(sys.argv[2]) / f"{f.parent.name}_{f.name}")
print(f"calibration: {len(files)} training images, {len({f.parent.name for f in files})} classes")
EOF
CAL="--calibration $OUT/calibration --calibration-count 256"
"$BIN/emo-export" --model emo_1m --weights "$CKPT" --format onnx,ort,tflite,executorch,pt2 --out "$OUT/fp32"
"$BIN/emo-export" --model emo_1m --weights "$CKPT" --format coreml --batch 50 --out "$OUT/coreml"
"$BIN/emo-export" --model emo_1m --weights "$CKPT" --format onnx,ort,tflite,executorch --precision int8 $CAL \
    --out "$OUT/int8"
"$BIN/emo-export" --model emo_1m --weights "$CKPT" --format coreml --precision int8 --batch 50 $CAL \
    --out "$OUT/coreml_int8"
"$BIN/emo-eval" "$CKPT" --model emo_1m "$OUT"/fp32/*.onnx "$OUT"/fp32/*.ort "$OUT"/fp32/*.tflite \
    "$OUT"/fp32/*.pte "$OUT"/fp32/*.pt2 "$OUT"/coreml/*.mlpackage "$OUT"/int8/*.onnx "$OUT"/int8/*.ort \
    "$OUT"/int8/*.tflite "$OUT"/int8/*.pte "$OUT"/coreml_int8/*.mlpackage --data "$DATA/test" --out "$OUT/eval" \
    | tee "$OUT/eval.txt"
if "$BIN/python" -c "import onnxruntime_qnn" 2>/dev/null; then
    "$BIN/emo-export" --model emo_1m --weights "$CKPT" --format qnn --precision w8a16 $CAL --out "$OUT/qnn"
    "$BIN/emo-export" --model emo_1m --weights "$CKPT" --format qnn --precision int8 $CAL --out "$OUT/qnn"
    "$BIN/emo-eval" "$CKPT" --model emo_1m "$OUT"/qnn/*.onnx --data "$DATA/test" ${QNN_LIMIT:+--limit "$QNN_LIMIT"} \
        --out "$OUT/eval_qnn" | tee "$OUT/eval_qnn.txt"
fi
