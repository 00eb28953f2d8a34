package org.emomobile.demo

import org.emomobile.core.Agreement

/**
 * The self-test: run the artifact's bundled examples (the exact input tensors emo-export stored) through the real
 * runtime on this phone and compare with PyTorch's outputs: max |diff|, cosine, top-1 and top-5 agreement, judged
 * by the tolerance of the artifact's precision.
 */
object SelfTest {
    fun run(model: CatalogModel, runner: ModelRunner): Agreement? {
        val examples = model.examples ?: return null
        return examples.agreement(examples.examples.map { runner.run(it.input) })
    }
}
