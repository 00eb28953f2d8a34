import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// Pure Kotlin (no Android imports): CI compiles it with Debian's kotlinc 1.3 and runs its JUnit tests on the JVM
// (tests/test_android_core.py); Android Studio builds it with this file. org.json ships with Android, so it is
// compileOnly here and a test dependency for the JVM. No JVM toolchain is requested: the JDK that runs Gradle
// (Android Studio's bundled JDK 17 or 21) compiles it for Java 17, so nothing has to be downloaded.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin { compilerOptions { jvmTarget.set(JvmTarget.JVM_17) } }

dependencies {
    compileOnly(libs.json)
    testImplementation(libs.json)
    testImplementation(libs.junit)
}

tasks.test {
    // the JUnit suites read real exported artifacts: export them first (see android_demo/README.md, "Tests")
    val data = providers.gradleProperty("emoTestData").getOrElse("../../out/mobile-test")
    systemProperty("emo.artifacts", "$data/artifacts")
    systemProperty("emo.pixels", "$data/pixels")
    systemProperty("emo.int8", "$data/int8")
    systemProperty("emo.ortprofile", "$data/ortprofile")
    systemProperty("emo.out", temporaryDir.absolutePath)
}
