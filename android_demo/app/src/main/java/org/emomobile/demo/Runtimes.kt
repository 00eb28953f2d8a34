package org.emomobile.demo

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorType
import android.os.Build
import android.os.SystemClock
import org.emomobile.core.AcceleratorReport
import org.emomobile.core.Clock
import org.emomobile.core.Engine
import org.emomobile.core.EngineLoader
import org.emomobile.core.EngineReport
import org.emomobile.core.LoadPlan
import org.emomobile.core.NpuFacts
import org.emomobile.core.OrtProfile
import org.emomobile.core.Runtimes
import java.io.File
import java.nio.ByteBuffer
import java.nio.FloatBuffer

/*
 * The runtime adapters: the only code that calls LiteRT and ONNX Runtime. Each maps the core's LoadPlan to API calls
 * and moves arrays in and out; every decision (accelerator, threads, GPU precision, int8 I/O, output checks, what the
 * report says) is org.emomobile.core's, tested on the JVM. Nothing here is compiled or run on this project's CI
 * (no Android SDK there): android_demo/README.md lists these lines as the untested ones.
 */

/** The core's clock: `SystemClock.elapsedRealtimeNanos`, monotonic and counting deep sleep. */
object ElapsedRealtime : Clock {
    override fun nanos(): Long = SystemClock.elapsedRealtimeNanos()
}

/**
 * Opens LiteRT (`.tflite`) and ONNX Runtime (`.onnx`, `.ort`) engines; [profileDir] holds ONNX Runtime profiles.
 * [litertVersion] is the LiteRT the APK was built with (BuildConfig, from the version catalog): its Kotlin API does
 * not report one, and a result row without its runtime's version cannot be compared with another.
 */
class AndroidEngineLoader(
    private val profileDir: File,
    private val litertVersion: String,
    /** `applicationInfo.nativeLibraryDir`: where the NPU dispatch and QNN libraries are packaged (extracted). */
    private val nativeLibraryDir: String
) : EngineLoader {
    private fun nativeLibraries(): List<String> = File(nativeLibraryDir).list()?.toList() ?: emptyList()

    /** The folder to point LiteRT's NPU options at: the app's native libraries, when a dispatch library is there. */
    private fun npuLibraryDir(): String? =
        if (Runtimes.dispatchLibraryPackaged(nativeLibraries())) nativeLibraryDir else null

    /** The SoC model exists from API 31 (minSdk is 28): unknown before. */
    override fun npu(): NpuFacts = NpuFacts(if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else null,
        nativeLibraries())

    // the NPU is offered only where a dispatch library is packaged: LiteRT registers the NPU accelerator whenever
    // DispatchLibraryDir is set, whether or not the folder holds one
    override fun available(runtime: String): List<String>? = when (runtime) {
        Runtimes.LITERT -> litertEnvironment(npuLibraryDir()).use { env ->
            env.getAvailableAccelerators().filter { it != Accelerator.NONE }.map { it.name.lowercase() }
        }
        Runtimes.ONNXRUNTIME -> OrtEnvironment.getAvailableProviders().map { AcceleratorReport.acceleratorOf(it.getName()) }
        else -> null
    }

    override fun load(plan: LoadPlan): Engine =
        if (plan.runtime == Runtimes.LITERT) {
            LiteRtEngine(plan, litertVersion, if (plan.npuLibraries) npuLibraryDir() else null)
        } else {
            OrtEngine(plan, profileDir)
        }
}

/** A LiteRT environment; with [npuLibraryDir], its dispatch and compiler-plugin library folders are that folder, as
 * LiteRT's NPU runtime expects the vendor libraries packaged in the APK. */
fun litertEnvironment(npuLibraryDir: String?): Environment =
    if (npuLibraryDir != null) Environment.create(mapOf(Environment.Option.DispatchLibraryDir to npuLibraryDir,
        Environment.Option.CompilerPluginLibraryDir to npuLibraryDir))
    else Environment.create()

/** LiteRT's CompiledModel: CPU (XNNPACK), GPU or NPU, with the plan's CPU threads and GPU precision. */
class LiteRtEngine(private val plan: LoadPlan, private val version: String, npuLibraryDir: String?) : Engine {
    private val env = litertEnvironment(npuLibraryDir)
    private val model: CompiledModel
    private val inputs: List<com.google.ai.edge.litert.TensorBuffer>
    private val outputs: List<com.google.ai.edge.litert.TensorBuffer>
    override val inputType: String
    override val outputType: String

    init {
        var created: CompiledModel? = null
        val buffers = ArrayList<com.google.ai.edge.litert.TensorBuffer>()
        try {
            val options = CompiledModel.Options(*plan.litertAccelerators.map { ACCELERATORS.getValue(it) }.toTypedArray())
            options.cpuOptions = CompiledModel.CpuOptions(numThreads = plan.threads)
            plan.gpuPrecision?.let {
                options.gpuOptions = CompiledModel.GpuOptions(precision = if (it == "fp32")
                    CompiledModel.GpuOptions.Precision.FP32 else CompiledModel.GpuOptions.Precision.FP16)
            }
            model = CompiledModel.create(plan.path, options, env).also { created = it }
            inputs = model.createInputBuffers().also { buffers += it }
            outputs = model.createOutputBuffers().also { buffers += it }
            // LiteRT's JNI throws for element types its Kotlin API lacks (uint8): after everything exists, so that
            // the catch below closes all of it
            inputType = elementType(model.getInputTensorType(plan.inputName))
            outputType = elementType(model.getOutputTensorType(plan.outputName))
        } catch (e: Throwable) {
            buffers.forEach { it.close() }
            created?.close()
            env.close()
            throw e
        }
    }

    override fun runFloats(input: FloatArray): FloatArray {
        inputs[0].writeFloat(input)
        model.run(inputs, outputs)
        return outputs[0].readFloat()
    }

    override fun runBytes(input: ByteArray): ByteArray {
        inputs[0].writeInt8(input)
        model.run(inputs, outputs)
        return outputs[0].readInt8()
    }

    override fun report() = EngineReport(null, plan.threads, version)

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
        env.close()
    }

    private companion object {
        val ACCELERATORS = mapOf("cpu" to Accelerator.CPU, "gpu" to Accelerator.GPU, "npu" to Accelerator.NPU)

        fun elementType(type: TensorType): String = when (type.elementType) {
            TensorType.ElementType.FLOAT -> "float32"
            TensorType.ElementType.INT8 -> "int8"
            else -> type.elementType.name.lowercase()
        }
    }
}

/** ONNX Runtime Android: the CPU EP, with XNNPACK or NNAPI in front when the plan says; profiled until [report]. */
class OrtEngine(private val plan: LoadPlan, profileDir: File) : Engine {
    private val env = OrtEnvironment.getEnvironment()
    private val options = OrtSession.SessionOptions()
    private val session: OrtSession
    override val inputType: String
    override val outputType: String

    init {
        var created: OrtSession? = null
        try {
            options.setIntraOpNumThreads(plan.intraOpThreads)
            for ((key, value) in plan.sessionConfig) options.addConfigEntry(key, value)
            if (plan.profileNodes) options.enableProfiling(File(profileDir, "ort-profile").absolutePath)
            when (plan.ortProvider) {
                "xnnpack" -> options.addXnnpack(mapOf("intra_op_num_threads" to plan.threads.toString()))
                "nnapi" -> options.addNnapi()
            }
            session = env.createSession(plan.path, options).also { created = it }
            inputType = elementType(session.inputInfo.getValue(plan.inputName).info as TensorInfo)
            outputType = elementType(session.outputInfo.getValue(plan.outputName).info as TensorInfo)
        } catch (e: Throwable) {
            created?.close()
            options.close()
            throw e
        }
    }

    override fun runFloats(input: FloatArray): FloatArray =
        OnnxTensor.createTensor(env, FloatBuffer.wrap(input), plan.inputShape).use { tensor ->
            session.run(mapOf(plan.inputName to tensor)).use { result ->
                val buffer = (result.get(0) as OnnxTensor).floatBuffer
                FloatArray(buffer.remaining()).also { buffer.get(it) }
            }
        }

    /** The bytes as the session's own input type (the core checked it is the sidecar's int8 or uint8). */
    override fun runBytes(input: ByteArray): ByteArray =
        OnnxTensor.createTensor(env, ByteBuffer.wrap(input), plan.inputShape,
            if (inputType == "uint8") OnnxJavaType.UINT8 else OnnxJavaType.INT8).use { tensor ->
            session.run(mapOf(plan.inputName to tensor)).use { result ->
                val buffer = (result.get(0) as OnnxTensor).byteBuffer
                ByteArray(buffer.remaining()).also { buffer.get(it) }
            }
        }

    /** Ends profiling (later runs are not profiled) and hands the profile to the core to count nodes per provider. */
    override fun report(): EngineReport {
        var nodes: Map<String, Int>? = null
        if (plan.profileNodes) {
            val file = File(session.endProfiling())
            nodes = OrtProfile.nodesPerProvider(file.readText())
            file.delete()
        }
        return EngineReport(nodes, plan.threads, env.version)
    }

    override fun close() {
        session.close()
        options.close()
    }

    private companion object {
        fun elementType(info: TensorInfo): String = when (info.type) {
            OnnxJavaType.FLOAT -> "float32"
            OnnxJavaType.INT8 -> "int8"
            OnnxJavaType.UINT8 -> "uint8"
            else -> info.type.name.lowercase()
        }
    }
}
