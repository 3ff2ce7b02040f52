import FuzzSupport

/// libFuzzer target `os-release`: every input through `ScanFuzzEntry.run(.osRelease, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("os-release", data, size)
}
