package org.emomobile.core

import java.io.Closeable

/**
 * The one interface between the app and a runtime. An adapter (LiteRT's CompiledModel, ONNX Runtime's OrtSession)
 * implements it with nothing but runtime calls; every decision (which accelerator, how many threads, quantizing an
 * int8 input, checking the output size, what to report) is made here, in the core, where the JVM tests reach it.
 */
interface Engine : Closeable {
    /** The graph's input element type as the runtime sees it: "float32", "int8" or "uint8". */
    val inputType: String

    /** The graph's output element type as the runtime sees it. */
    val outputType: String

    /** One inference on a float32 input (the whole batch), returning the whole float32 output. */
    fun runFloats(input: FloatArray): FloatArray

    /** One inference on a quantized input (one byte per element), returning the quantized output bytes. */
    fun runBytes(input: ByteArray): ByteArray

    /**
     * What the runtime says about the run so far. Called once, after the first inference and before the timed ones:
     * an adapter that profiles to learn where nodes ran (ONNX Runtime) ends profiling here.
     */
    fun report(): EngineReport
}

/**
 * What an adapter can learn from its runtime: nodes per execution provider where the runtime reports them (ONNX
 * Runtime's profile, read with [OrtProfile.nodesPerProvider]) or whether it was fully accelerated, the CPU threads it
 * was configured with (null: it takes none) and its version. Which accelerator that adds up to is decided by [AcceleratorReport].
 */
class EngineReport(
    val providerNodes: Map<String, Int>?,
    val threads: Int?,
    val runtimeVersion: String?,
    /** Whether every op ran on the requested accelerator, where the runtime says (LiteRT's C++
     * `CompiledModel::IsFullyAccelerated`; its Kotlin API does not expose it yet, so the adapter passes null). */
    val fullyAccelerated: Boolean? = null
)

/** Opens an [Engine] for a [LoadPlan]: the platform's half of loading (the file, the runtime's options). */
interface EngineLoader {
    /** The accelerators this device's build of [runtime] offers (LiteRT's `getAvailableAccelerators`, ONNX
     * Runtime's `getAvailableProviders`, as accelerator names), or null when the runtime cannot tell. */
    fun available(runtime: String): List<String>?

    /** What the NPU needs from this phone (its SoC, the app's packaged native libraries), or null when unknown. */
    fun npu(): NpuFacts? = null

    fun load(plan: LoadPlan): Engine
}

/** The phone's side of running an NPU-compiled model: `Build.SOC_MODEL` (API 31+, else null) and the file names in
 * `applicationInfo.nativeLibraryDir`. */
class NpuFacts(val socModel: String?, val nativeLibraries: List<String>)

/** Nanoseconds from a monotonic clock (`SystemClock.elapsedRealtimeNanos` on Android, `System.nanoTime` in tests). */
interface Clock {
    fun nanos(): Long
}

/**
 * An [Engine] behind the sidecar's contract: one image's tensor (batch 1, the sidecar's layout) in, one row of
 * [Sidecar.numClasses] floats out. A static batch N gets the image N times and the first row is returned; a
 * full-integer artifact gets its input quantized and its output dequantized with the sidecar's scale and zero point;
 * a runtime whose element types disagree with the sidecar, or an output of another size, is an error that says so.
 */
class ModelSession(val sidecar: Sidecar, val engine: Engine) : Closeable {
    private val batch = Math.max(sidecar.batch, 1)

    init {
        for (spec in listOf(sidecar.inputSpec, sidecar.outputSpec)) {
            if (spec.dtype !in TensorSpec.APP_DTYPES) {
                throw ModelContractException("the sidecar gives the model ${spec.dtype} tensors; the app runs " +
                    "${TensorSpec.APP_DTYPES.joinToString()} artifacts (export tflite --precision int8)")
            }
        }
        if (sidecar.inputSpec.quantized != sidecar.outputSpec.quantized) {
            throw ModelContractException("the sidecar gives the model ${sidecar.inputSpec.dtype} input and " +
                "${sidecar.outputSpec.dtype} output; the app runs float32 or full-integer (int8 in and out) artifacts")
        }
        if (engine.inputType != sidecar.inputSpec.dtype) {
            throw ModelContractException("the model's input is ${engine.inputType} but its sidecar says " +
                "${sidecar.inputSpec.dtype}; re-export the artifact (the sidecar belongs to another file)")
        }
        if (engine.outputType != sidecar.outputSpec.dtype) {
            throw ModelContractException("the model's output is ${engine.outputType} but its sidecar says " +
                "${sidecar.outputSpec.dtype}; re-export the artifact (the sidecar belongs to another file)")
        }
    }

    /** The output row (logits or probabilities, dequantized) for one image's input tensor. */
    fun run(input: FloatArray): FloatArray {
        require(input.size == sidecar.inputSize) { "the input has ${input.size} values, the model takes ${sidecar.inputSize}" }
        val whole = if (batch == 1) input else FloatArray(input.size * batch) { input[it % input.size] }
        val output = if (sidecar.inputSpec.quantized) {
            val bytes = engine.runBytes(Quantization.quantize(whole, sidecar.inputSpec))
            Quantization.dequantize(bytes, sidecar.outputSpec)
        } else {
            engine.runFloats(whole)
        }
        return firstRow(output)
    }

    private fun firstRow(output: FloatArray): FloatArray {
        val expected = sidecar.numClasses * batch
        if (output.size != expected) {
            throw ModelContractException("the model returned ${output.size} values, its sidecar says $batch x " +
                "${sidecar.numClasses}; re-export the artifact")
        }
        return if (batch == 1) output else output.copyOf(sidecar.numClasses)
    }

    override fun close() = engine.close()
}

/**
 * Full-integer I/O, as `emo.export.tflite.load` applies it on the host: q = clip(rint(x / scale) + zero_point) with
 * float32 division and round-half-to-even, and x = (q - zero_point) * scale in float32, so a phone feeds the int8
 * artifact the very bytes the export was verified with.
 */
object Quantization {
    fun quantize(values: FloatArray, spec: TensorSpec): ByteArray {
        if (!spec.quantized) throw IllegalArgumentException("a float32 input is not quantized")
        val range = TensorSpec.range(spec.dtype)
        return ByteArray(values.size) {
            val q = Math.rint((values[it] / spec.scale).toDouble()) + spec.zeroPoint
            Math.max(range[0].toDouble(), Math.min(range[1].toDouble(), q)).toInt().toByte()
        }
    }

    fun dequantize(bytes: ByteArray, spec: TensorSpec): FloatArray {
        if (!spec.quantized) throw IllegalArgumentException("a float32 output is not quantized")
        val unsigned = spec.dtype == "uint8"
        return FloatArray(bytes.size) {
            val q = if (unsigned) bytes[it].toInt() and 0xff else bytes[it].toInt()
            (q.toFloat() - spec.zeroPoint.toFloat()) * spec.scale
        }
    }
}
