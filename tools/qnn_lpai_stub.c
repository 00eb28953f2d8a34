/*
 * An empty libQnnLpai.so, so that ai-edge-litert's Qualcomm compiler plugin loads with the QNN libraries of
 * onnxruntime-qnn (emo-export --format litert-npu). `make venv` builds it into .venv/lib/emo-mobile/, and only the
 * child process that runs the compiler has that folder on its library path.
 *
 * Why it is needed: ai-edge-litert 2.3.0's libLiteRtCompilerPlugin_Qualcomm.so lists libQnnLpai.so as DT_NEEDED
 * (readelf -d), so the dynamic loader refuses to load the plugin without a file of that name; onnxruntime-qnn 2.7.0
 * ships the HTP libraries (libQnnHtp.so, libHtpPrepare.so, libQnnSystem.so, ...) but not LPAI.
 *
 * Why an empty one is safe for HTP targets:
 * - The plugin imports no symbol from any QNN library (nm -D --undefined-only lists only libc/libstdc++ symbols):
 *   the DT_NEEDED entry is a link-time leftover, nothing is resolved in this file.
 * - QNN backends are opened with dlopen and resolved through QnnInterface_getProviders, one backend per compile,
 *   chosen by its type: google-ai-edge/LiteRT (commit f67457790c9c) litert/vendors/qualcomm/qnn_manager.cc, QnnManager::Init loads
 *   HtpBackend::GetLibraryName() ("libQnnHtp.so", core/backends/htp_backend.h) for kHtpBackend (lines 547-548)
 *   and LpaiBackend::GetLibraryName() ("libQnnLpai.so", core/backends/lpai_backend.h:28) only for kLpaiBackend
 *   (lines 565-566). The backend type defaults to HTP (core/common.h:260, c/options/litert_qualcomm_options.cc:1132)
 *   and emo-export never asks for LPAI, Qualcomm's low-power always-on engine.
 * - Should anything ever ask for LPAI, this library defines no QnnInterface_getProviders, so QNN's API resolution
 *   fails with an error instead of running anything.
 */
