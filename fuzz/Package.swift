// swift-tools-version:6.0
// The fuzz package (issue 15 item 9): one libFuzzer executable per parser of untrusted layer
// bytes, each calling `Scanning`'s `@_spi(Fuzzing) ScanFuzzEntry` with the scanner's bounds. A
// package of its own so the main package's build and `swift test` never see it; `scripts/fuzz`
// builds it (`--sanitize fuzzer --sanitize address`, which instruments Scanning and its
// dependencies too) into fuzz/.build and runs the campaign.
import Foundation
import PackageDescription

// A package depended upon by path is known by its directory's name (the clone's name).
let main = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

// One per `ScanFuzzEntry.Target` (its raw value), each in Sources/fuzz-<target>/.
let targets = ["layer", "os-release", "dpkg-status", "dpkg-status-d", "apk", "rpm", "python", "npm", "java", "go",
               "openvex", "osv", "debian", "alpine"]

let package = Package(
    name: "BerthFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "Scanning", package: main)]),
    ] + targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport"],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    },
    swiftLanguageModes: [.v6]
)
