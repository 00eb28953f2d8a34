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
import org.emomobile.core.AcceleratorReport
import org.emomobile.core.Engine
import org.emomobile.core.EngineLoader
import org.emomobile.core.EngineReport
import org.emomobile.core.LoadPlan
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

/** Opens LiteRT (`.tflite`) and ONNX Runtime (`.onnx`, `.ort`) engines; [profileDir] holds ONNX Runtime profiles. */
class AndroidEngineLoader(private val profileDir: File) : EngineLoader {
    override fun available(runtime: String): List<String>? = when (runtime) {
        Runtimes.LITERT -> Environment.create().use { env ->
            env.getAvailableAccelerators().filter { it != Accelerator.NONE }.map { it.name.lowercase() }
        }
        Runtimes.ONNXRUNTIME -> OrtEnvironment.getAvailableProviders().map { AcceleratorReport.acceleratorOf(it.getName()) }
        else -> null
    }

    override fun load(plan: LoadPlan): Engine =
        if (plan.runtime == Runtimes.LITERT) LiteRtEngine(plan) else OrtEngine(plan, profileDir)
}

/** LiteRT's CompiledModel: CPU (XNNPACK), GPU or NPU, with the plan's CPU threads and GPU precision. */
class LiteRtEngine(private val plan: LoadPlan) : Engine {
    private val env = Environment.create()
    private val model: CompiledModel
    private val inputs: List<com.google.ai.edge.litert.TensorBuffer>
    private val outputs: List<com.google.ai.edge.litert.TensorBuffer>
    override val inputType: String
    override val outputType: String

    init {
        try {
            val options = CompiledModel.Options(*plan.litertAccelerators.map { ACCELERATORS.getValue(it) }.toTypedArray())
            options.cpuOptions = CompiledModel.CpuOptions(numThreads = plan.threads)
            plan.gpuPrecision?.let {
                options.gpuOptions = CompiledModel.GpuOptions(precision = if (it == "fp32")
                    CompiledModel.GpuOptions.Precision.FP32 else CompiledModel.GpuOptions.Precision.FP16)
            }
            model = CompiledModel.create(plan.path, options, env)
            inputType = elementType(model.getInputTensorType(plan.inputName))
            outputType = elementType(model.getOutputTensorType(plan.outputName))
            inputs = model.createInputBuffers()
            outputs = model.createOutputBuffers()
        } catch (e: Exception) {
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

    override fun report() = EngineReport(null, plan.threads, null)

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
        try {
            options.setIntraOpNumThreads(plan.intraOpThreads)
            for ((key, value) in plan.sessionConfig) options.addConfigEntry(key, value)
            if (plan.profileNodes) options.enableProfiling(File(profileDir, "ort-profile").absolutePath)
            when (plan.ortProvider) {
                "xnnpack" -> options.addXnnpack(mapOf("intra_op_num_threads" to plan.threads.toString()))
                "nnapi" -> options.addNnapi()
            }
            session = env.createSession(plan.path, options)
            inputType = elementType(session.inputInfo.getValue(plan.inputName).info as TensorInfo)
            outputType = elementType(session.outputInfo.getValue(plan.outputName).info as TensorInfo)
        } catch (e: Exception) {
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

    override fun runBytes(input: ByteArray): ByteArray =
        OnnxTensor.createTensor(env, ByteBuffer.wrap(input), plan.inputShape, OnnxJavaType.INT8).use { tensor ->
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
