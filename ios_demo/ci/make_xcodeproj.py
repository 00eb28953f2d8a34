"""Write ios_demo/App/EMODemo.xcodeproj/project.pbxproj: the iOS app target with every App/Sources/*.swift, the
Models folder copied as a folder (the app compiles .mlpackage files at run time), Info.plist, and the local EMOCore
package. Deterministic object ids, so re-running after adding a source changes only what must change.

    python3 ios_demo/ci/make_xcodeproj.py        (tests/test_ios_core.py checks the committed file is current)

project.yml describes the same project for XcodeGen users; Xcode 15 or newer opens this one directly.
"""

import hashlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "App"
DEPLOYMENT_TARGET = "16.0"


def oid(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:24].upper()


def settings(values: dict, indent: str = "\t\t\t\t") -> str:
    return "".join(f"{indent}{k} = {v};\n" for k, v in sorted(values.items()))


def pbxproj(sources: list) -> str:
    o = {}
    for s in sources:
        o["file:" + s], o["build:" + s] = oid("file:" + s), oid("build:" + s)
    for k in ["file:Info.plist", "file:Models", "build:Models", "file:product", "build:EMOCore", "group:main",
              "group:Sources", "group:Products", "phase:sources", "phase:frameworks", "phase:resources", "target",
              "project", "conf:project:Debug", "conf:project:Release", "conf:target:Debug", "conf:target:Release",
              "list:project", "list:target", "package", "product:EMOCore"]:
        o[k] = oid(k)
    common = {"ALWAYS_SEARCH_USER_PATHS": "NO", "CLANG_ENABLE_MODULES": "YES", "CLANG_ENABLE_OBJC_ARC": "YES",
              "ENABLE_STRICT_OBJC_MSGSEND": "YES", "ENABLE_USER_SCRIPT_SANDBOXING": "YES",
              "GCC_C_LANGUAGE_STANDARD": "gnu17", "IPHONEOS_DEPLOYMENT_TARGET": DEPLOYMENT_TARGET, "SDKROOT": "iphoneos",
              "SWIFT_VERSION": "5.0"}
    debug = {**common, "DEBUG_INFORMATION_FORMAT": "dwarf", "ENABLE_TESTABILITY": "YES", "GCC_OPTIMIZATION_LEVEL": "0",
             "ONLY_ACTIVE_ARCH": "YES", "SWIFT_ACTIVE_COMPILATION_CONDITIONS": "DEBUG",
             "SWIFT_OPTIMIZATION_LEVEL": '"-Onone"'}
    release = {**common, "DEBUG_INFORMATION_FORMAT": '"dwarf-with-dsym"', "SWIFT_COMPILATION_MODE": "wholemodule",
               "SWIFT_OPTIMIZATION_LEVEL": '"-O"', "VALIDATE_PRODUCT": "YES"}
    target = {"CODE_SIGN_STYLE": "Automatic", "CURRENT_PROJECT_VERSION": "2", "GENERATE_INFOPLIST_FILE": "NO",
              "INFOPLIST_FILE": "Info.plist", "IPHONEOS_DEPLOYMENT_TARGET": DEPLOYMENT_TARGET,
              "LD_RUNPATH_SEARCH_PATHS": '(\n\t\t\t\t\t"$(inherited)",\n\t\t\t\t\t"@executable_path/Frameworks",\n\t\t\t\t)',
              "MARKETING_VERSION": "0.2.0", "PRODUCT_BUNDLE_IDENTIFIER": "org.emomobile.demo",
              "PRODUCT_NAME": '"$(TARGET_NAME)"', "SUPPORTED_PLATFORMS": '"iphoneos iphonesimulator"',
              "SWIFT_VERSION": "5.0", "TARGETED_DEVICE_FAMILY": "1"}
    t, g = "\t", "<group>"
    out = [f"// !$*UTF8*$!\n{{\n{t}archiveVersion = 1;\n{t}classes = {{\n{t}}};\n{t}objectVersion = 60;\n{t}objects = {{\n"]
    out.append("\n/* Begin PBXBuildFile section */\n")
    for s in sources:
        out.append(f"\t\t{o['build:' + s]} /* {s} in Sources */ = {{isa = PBXBuildFile; fileRef = {o['file:' + s]} "
                   f"/* {s} */; }};\n")
    out.append(f"\t\t{o['build:Models']} /* Models in Resources */ = {{isa = PBXBuildFile; fileRef = "
               f"{o['file:Models']} /* Models */; }};\n")
    out.append(f"\t\t{o['build:EMOCore']} /* EMOCore in Frameworks */ = {{isa = PBXBuildFile; productRef = "
               f"{o['product:EMOCore']} /* EMOCore */; }};\n")
    out.append("/* End PBXBuildFile section */\n\n/* Begin PBXFileReference section */\n")
    for s in sources:
        out.append(f"\t\t{o['file:' + s]} /* {s} */ = {{isa = PBXFileReference; lastKnownFileType = sourcecode.swift; "
                   f"path = {s}; sourceTree = \"{g}\"; }};\n")
    out.append(f"\t\t{o['file:Info.plist']} /* Info.plist */ = {{isa = PBXFileReference; lastKnownFileType = "
               f"text.plist.xml; path = Info.plist; sourceTree = \"{g}\"; }};\n")
    out.append(f"\t\t{o['file:Models']} /* Models */ = {{isa = PBXFileReference; lastKnownFileType = folder; "
               f"path = Models; sourceTree = \"{g}\"; }};\n")
    out.append(f"\t\t{o['file:product']} /* EMODemo.app */ = {{isa = PBXFileReference; explicitFileType = "
               "wrapper.application; includeInIndex = 0; path = EMODemo.app; sourceTree = BUILT_PRODUCTS_DIR; };\n")
    out.append("/* End PBXFileReference section */\n\n/* Begin PBXFrameworksBuildPhase section */\n")
    out.append(f"\t\t{o['phase:frameworks']} /* Frameworks */ = {{\n\t\t\tisa = PBXFrameworksBuildPhase;\n"
               f"\t\t\tbuildActionMask = 2147483647;\n\t\t\tfiles = (\n\t\t\t\t{o['build:EMOCore']} /* EMOCore in "
               "Frameworks */,\n\t\t\t);\n\t\t\trunOnlyForDeploymentPostprocessing = 0;\n\t\t};\n")
    out.append("/* End PBXFrameworksBuildPhase section */\n\n/* Begin PBXGroup section */\n")
    out.append(f"\t\t{o['group:main']} = {{\n\t\t\tisa = PBXGroup;\n\t\t\tchildren = (\n"
               f"\t\t\t\t{o['group:Sources']} /* Sources */,\n\t\t\t\t{o['file:Models']} /* Models */,\n"
               f"\t\t\t\t{o['file:Info.plist']} /* Info.plist */,\n\t\t\t\t{o['group:Products']} /* Products */,\n"
               f"\t\t\t);\n\t\t\tsourceTree = \"{g}\";\n\t\t}};\n")
    children = "".join(f"\t\t\t\t{o['file:' + s]} /* {s} */,\n" for s in sources)
    out.append(f"\t\t{o['group:Sources']} /* Sources */ = {{\n\t\t\tisa = PBXGroup;\n\t\t\tchildren = (\n{children}"
               f"\t\t\t);\n\t\t\tpath = Sources;\n\t\t\tsourceTree = \"{g}\";\n\t\t}};\n")
    out.append(f"\t\t{o['group:Products']} /* Products */ = {{\n\t\t\tisa = PBXGroup;\n\t\t\tchildren = (\n"
               f"\t\t\t\t{o['file:product']} /* EMODemo.app */,\n\t\t\t);\n\t\t\tname = Products;\n"
               f"\t\t\tsourceTree = \"{g}\";\n\t\t}};\n")
    out.append("/* End PBXGroup section */\n\n/* Begin PBXNativeTarget section */\n")
    out.append(f"\t\t{o['target']} /* EMODemo */ = {{\n\t\t\tisa = PBXNativeTarget;\n\t\t\tbuildConfigurationList = "
               f"{o['list:target']} /* Build configuration list for PBXNativeTarget \"EMODemo\" */;\n"
               f"\t\t\tbuildPhases = (\n\t\t\t\t{o['phase:sources']} /* Sources */,\n"
               f"\t\t\t\t{o['phase:frameworks']} /* Frameworks */,\n\t\t\t\t{o['phase:resources']} /* Resources */,\n"
               "\t\t\t);\n\t\t\tbuildRules = (\n\t\t\t);\n\t\t\tdependencies = (\n\t\t\t);\n\t\t\tname = EMODemo;\n"
               f"\t\t\tpackageProductDependencies = (\n\t\t\t\t{o['product:EMOCore']} /* EMOCore */,\n\t\t\t);\n"
               f"\t\t\tproductName = EMODemo;\n\t\t\tproductReference = {o['file:product']} /* EMODemo.app */;\n"
               "\t\t\tproductType = \"com.apple.product-type.application\";\n\t\t};\n")
    out.append("/* End PBXNativeTarget section */\n\n/* Begin PBXProject section */\n")
    out.append(f"\t\t{o['project']} /* Project object */ = {{\n\t\t\tisa = PBXProject;\n\t\t\tattributes = {{\n"
               "\t\t\t\tBuildIndependentTargetsInParallel = 1;\n\t\t\t\tLastSwiftUpdateCheck = 1500;\n"
               f"\t\t\t\tLastUpgradeCheck = 1500;\n\t\t\t\tTargetAttributes = {{\n\t\t\t\t\t{o['target']} = {{\n"
               "\t\t\t\t\t\tCreatedOnToolsVersion = 15.0;\n\t\t\t\t\t};\n\t\t\t\t};\n\t\t\t};\n"
               f"\t\t\tbuildConfigurationList = {o['list:project']} /* Build configuration list for PBXProject "
               "\"EMODemo\" */;\n\t\t\tcompatibilityVersion = \"Xcode 15.0\";\n\t\t\tdevelopmentRegion = en;\n"
               "\t\t\thasScannedForEncodings = 0;\n\t\t\tknownRegions = (\n\t\t\t\ten,\n\t\t\t\tBase,\n\t\t\t);\n"
               f"\t\t\tmainGroup = {o['group:main']};\n\t\t\tpackageReferences = (\n\t\t\t\t{o['package']} "
               "/* XCLocalSwiftPackageReference \"../EMOCore\" */,\n\t\t\t);\n"
               f"\t\t\tproductRefGroup = {o['group:Products']} /* Products */;\n\t\t\tprojectDirPath = \"\";\n"
               f"\t\t\tprojectRoot = \"\";\n\t\t\ttargets = (\n\t\t\t\t{o['target']} /* EMODemo */,\n\t\t\t);\n"
               "\t\t};\n")
    out.append("/* End PBXProject section */\n\n/* Begin PBXResourcesBuildPhase section */\n")
    out.append(f"\t\t{o['phase:resources']} /* Resources */ = {{\n\t\t\tisa = PBXResourcesBuildPhase;\n"
               f"\t\t\tbuildActionMask = 2147483647;\n\t\t\tfiles = (\n\t\t\t\t{o['build:Models']} /* Models in "
               "Resources */,\n\t\t\t);\n\t\t\trunOnlyForDeploymentPostprocessing = 0;\n\t\t};\n")
    out.append("/* End PBXResourcesBuildPhase section */\n\n/* Begin PBXSourcesBuildPhase section */\n")
    files = "".join(f"\t\t\t\t{o['build:' + s]} /* {s} in Sources */,\n" for s in sources)
    out.append(f"\t\t{o['phase:sources']} /* Sources */ = {{\n\t\t\tisa = PBXSourcesBuildPhase;\n"
               f"\t\t\tbuildActionMask = 2147483647;\n\t\t\tfiles = (\n{files}\t\t\t);\n"
               "\t\t\trunOnlyForDeploymentPostprocessing = 0;\n\t\t};\n")
    out.append("/* End PBXSourcesBuildPhase section */\n\n/* Begin XCBuildConfiguration section */\n")
    for key, name, values in [("conf:project:Debug", "Debug", debug), ("conf:project:Release", "Release", release),
                              ("conf:target:Debug", "Debug", target), ("conf:target:Release", "Release", target)]:
        out.append(f"\t\t{o[key]} /* {name} */ = {{\n\t\t\tisa = XCBuildConfiguration;\n\t\t\tbuildSettings = {{\n"
                   f"{settings(values)}\t\t\t}};\n\t\t\tname = {name};\n\t\t}};\n")
    out.append("/* End XCBuildConfiguration section */\n\n/* Begin XCConfigurationList section */\n")
    for key, what, d, r in [("list:project", 'PBXProject "EMODemo"', "conf:project:Debug", "conf:project:Release"),
                            ("list:target", 'PBXNativeTarget "EMODemo"', "conf:target:Debug", "conf:target:Release")]:
        out.append(f"\t\t{o[key]} /* Build configuration list for {what} */ = {{\n\t\t\tisa = XCConfigurationList;\n"
                   f"\t\t\tbuildConfigurations = (\n\t\t\t\t{o[d]} /* Debug */,\n\t\t\t\t{o[r]} /* Release */,\n"
                   "\t\t\t);\n\t\t\tdefaultConfigurationIsVisible = 0;\n\t\t\tdefaultConfigurationName = Release;\n"
                   "\t\t};\n")
    out.append("/* End XCConfigurationList section */\n\n/* Begin XCLocalSwiftPackageReference section */\n")
    out.append(f"\t\t{o['package']} /* XCLocalSwiftPackageReference \"../EMOCore\" */ = {{\n"
               "\t\t\tisa = XCLocalSwiftPackageReference;\n\t\t\trelativePath = ../EMOCore;\n\t\t};\n")
    out.append("/* End XCLocalSwiftPackageReference section */\n\n/* Begin XCSwiftPackageProductDependency section */\n")
    out.append(f"\t\t{o['product:EMOCore']} /* EMOCore */ = {{\n\t\t\tisa = XCSwiftPackageProductDependency;\n"
               f"\t\t\tpackage = {o['package']} /* XCLocalSwiftPackageReference \"../EMOCore\" */;\n"
               "\t\t\tproductName = EMOCore;\n\t\t};\n")
    out.append("/* End XCSwiftPackageProductDependency section */\n\t};\n")
    out.append(f"\trootObject = {o['project']} /* Project object */;\n}}\n")
    return "".join(out)


def main() -> int:
    text = pbxproj(sorted(p.name for p in (APP / "Sources").glob("*.swift")))
    target = APP / "EMODemo.xcodeproj" / "project.pbxproj"
    if "--check" in sys.argv:
        return 0 if target.read_text() == text else 1
    target.parent.mkdir(exist_ok=True)
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
