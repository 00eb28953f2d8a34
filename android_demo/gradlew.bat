@rem Gradle wrapper launcher (Windows): runs the Gradle that gradle\wrapper\gradle-wrapper.properties names,
@rem through gradle\wrapper\gradle-wrapper.jar (a binary this repository does not carry; see README.md, "Building").
@if "%DEBUG%"=="" @echo off
setlocal
set APP_HOME=%~dp0
set WRAPPER_JAR=%APP_HOME%gradle\wrapper\gradle-wrapper.jar
if exist "%WRAPPER_JAR%" goto findJava
echo gradlew: %WRAPPER_JAR% is missing (a binary this repository does not carry). 1>&2
echo Open android_demo in Android Studio (it downloads Gradle 8.9 itself), or create the jar once with an installed 1>&2
echo Gradle 8.9 or newer: cd android_demo ^&^& gradle wrapper --gradle-version 8.9 1>&2
exit /b 1
:findJava
if defined JAVA_HOME (set JAVA_EXE=%JAVA_HOME%\bin\java.exe) else (set JAVA_EXE=java.exe)
"%JAVA_EXE%" -version >NUL 2>&1
if %ERRORLEVEL% neq 0 (
  echo gradlew: no working java: set JAVA_HOME to a JDK 17+ ^(Android Studio bundles one^) 1>&2
  exit /b 1
)
"%JAVA_EXE%" -Xmx64m -Xms64m "-Dorg.gradle.appname=gradlew" -classpath "%WRAPPER_JAR%" org.gradle.wrapper.GradleWrapperMain %*
exit /b %ERRORLEVEL%
