package org.emomobile.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import org.emomobile.core.Sidecar
import java.io.File
import java.nio.FloatBuffer

/** One loaded artifact in its runtime: one image's tensor (batch 1, the sidecar's layout) in, one output row out. */
interface ModelRunner : AutoCloseable {
    /** What the runtime actually runs on (a delegate that refused the model falls back, and this says so). */
    val acceleratorUsed: String
    fun run(input: FloatArray): FloatArray
}

/** Accelerators per runtime, as offered in the UI and accepted by the benchmark mode's `--es accelerator`. */
val LITERT_ACCELERATORS = listOf("cpu", "gpu", "npu")
val ORT_ACCELERATORS = listOf("cpu", "xnnpack", "nnapi", "qnn")

fun acceleratorsFor(sidecar: Sidecar): List<String> =
    if (sidecar.backend == "tflite") LITERT_ACCELERATORS else ORT_ACCELERATORS

fun openRunner(model: File, sidecar: Sidecar, accelerator: String, threads: Int): ModelRunner = when (sidecar.backend) {
    "tflite" -> LiteRtRunner(model, sidecar, accelerator)
    "onnx", "ort" -> OrtRunner(model, sidecar, accelerator, threads)
    else -> throw IllegalArgumentException("${sidecar.backend} artifacts do not run on Android; export tflite, onnx or ort")
}

/** A static batch N takes the image repeated N times (the sidecar says N); the first output row is ours. */
private fun batched(input: FloatArray, sidecar: Sidecar): FloatArray {
    val n = maxOf(sidecar.batch, 1)
    if (n == 1) return input
    return FloatArray(input.size * n) { input[it % input.size] }
}

/** LiteRT's CompiledModel API: CPU (XNNPACK), GPU (ML Drift / OpenCL) or NPU (the vendor's dispatch library). */
class LiteRtRunner(model: File, private val sidecar: Sidecar, accelerator: String) : ModelRunner {
    private val env = Environment.create()
    private val compiled: CompiledModel
    override val acceleratorUsed: String

    init {
        val wanted = when (accelerator) {
            "gpu" -> Accelerator.GPU
            "npu" -> Accelerator.NPU
            else -> Accelerator.CPU
        }
        var used = accelerator
        compiled = try {
            CompiledModel.create(model.absolutePath, CompiledModel.Options(wanted), env)
        } catch (e: Exception) {
            if (wanted == Accelerator.CPU) throw e
            used = "cpu ($accelerator refused: ${e.message?.lineSequence()?.first()})"
            CompiledModel.create(model.absolutePath, CompiledModel.Options(Accelerator.CPU), env)
        }
        acceleratorUsed = used
    }

    private val inputs = compiled.createInputBuffers()
    private val outputs = compiled.createOutputBuffers()

    override fun run(input: FloatArray): FloatArray {
        inputs[0].writeFloat(batched(input, sidecar))
        compiled.run(inputs, outputs)
        return outputs[0].readFloat().copyOf(sidecar.numClasses)
    }

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        compiled.close()
        env.close()
    }
}

/** ONNX Runtime Android with the CPU, XNNPACK, NNAPI or QNN (Qualcomm HTP) execution provider. */
class OrtRunner(model: File, private val sidecar: Sidecar, accelerator: String, threads: Int) : ModelRunner {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession
    override val acceleratorUsed: String = accelerator
    private val shape = longArrayOf(maxOf(sidecar.batch, 1).toLong(), 3, sidecar.height.toLong(), sidecar.width.toLong())

    init {
        val options = OrtSession.SessionOptions()
        options.setIntraOpNumThreads(threads)
        when (accelerator) {
            "xnnpack" -> options.addXnnpack(mapOf("intra_op_num_threads" to threads.toString()))
            "nnapi" -> options.addNnapi()
            "qnn" -> options.addQnn(mapOf("backend_path" to "libQnnHtp.so"))
        }
        session = env.createSession(model.absolutePath, options)
    }

    override fun run(input: FloatArray): FloatArray {
        OnnxTensor.createTensor(env, FloatBuffer.wrap(batched(input, sidecar)), shape).use { tensor ->
            session.run(mapOf(sidecar.inputName to tensor)).use { result ->
                @Suppress("UNCHECKED_CAST")
                return (result[0].value as Array<FloatArray>)[0]
            }
        }
    }

    override fun close() = session.close()
}
