// Pure Kotlin (no Android imports): CI compiles it with Debian's kotlinc 1.3 and runs its JUnit tests on the JVM
// (tests/test_android_core.py); Android Studio builds it with this file. org.json ships with Android, so it is
// compileOnly here and a test dependency for the JVM.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin { jvmToolchain(17) }

dependencies {
    compileOnly(libs.json)
    testImplementation(libs.json)
    testImplementation(libs.junit)
}

tasks.test {
    // the JUnit suite reads real exported artifacts: export them first (see android_demo/README.md)
    systemProperty("emo.artifacts", providers.gradleProperty("emoArtifacts").getOrElse("../../out/mobile-test/artifacts"))
    systemProperty("emo.pixels", providers.gradleProperty("emoPixels").getOrElse("../../out/mobile-test/pixels"))
    systemProperty("emo.out", temporaryDir.absolutePath)
}
