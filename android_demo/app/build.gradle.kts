import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "org.emomobile.demo"
    compileSdk = 35
    defaultConfig {
        applicationId = "org.emomobile.demo"
        // 28: ImageDecoder (EXIF-aware photo decoding) is API 28; the NPU/GPU paths need newer devices anyway
        minSdk = 28
        targetSdk = 35
        versionCode = 2
        versionName = "0.2.0"
        // phones only: an x86_64 emulator refuses the APK (INSTALL_FAILED_NO_MATCHING_ABIS); add "x86_64" to run
        // it there
        ndk { abiFilters += listOf("arm64-v8a") }
        // the LiteRT the APK is built with, for the benchmark result (LiteRT's Kotlin API does not report it)
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
    }
    // `./gradlew :app:assembleDebug` signs with the SDK's debug key (~/.android/debug.keystore, made on first use):
    // app/build/outputs/apk/debug/app-debug.apk installs with `adb install -r`. A release build is unsigned until
    // you add your own signingConfig.
    buildTypes {
        release { isMinifyEnabled = false }
    }
    // LiteRT on the NPU: the vendor's dispatch and QNN libraries (app/src/main/jniLibs/arm64-v8a/, not in the
    // repository: android_demo/README.md, "LiteRT on the NPU") must be extracted to nativeLibraryDir as files: LiteRT
    // scans that folder for libLiteRtDispatch_*.so and the DSP loads the HTP's Skel library from a path
    packaging { jniLibs { useLegacyPackaging = true } }
    buildFeatures {
        compose = true
        buildConfig = true  // BuildConfig.VERSION_NAME and LITERT_VERSION go into the benchmark result
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    // models are memory-mapped from the APK: keep them uncompressed
    androidResources { noCompress += listOf("tflite", "onnx", "ort") }
}

kotlin { compilerOptions { jvmTarget.set(JvmTarget.JVM_17) } }

dependencies {
    implementation(project(":core"))
    implementation(libs.litert)  // CPU, GPU and NPU accelerators alike (see gradle/libs.versions.toml)
    implementation(libs.onnxruntime.android)
    implementation(libs.camerax.core)
    implementation(libs.camerax.camera2)
    implementation(libs.camerax.lifecycle)
    implementation(libs.camerax.view)
    implementation(platform(libs.compose.bom))
    implementation(libs.compose.ui)
    implementation(libs.compose.material3)
    implementation(libs.activity.compose)
}
