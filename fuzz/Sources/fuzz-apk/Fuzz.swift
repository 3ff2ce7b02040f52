import FuzzSupport

/// libFuzzer target `apk`: every input through `ScanFuzzEntry.run(.apk, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("apk", data, size)
}
