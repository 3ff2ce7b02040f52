import FuzzSupport

/// libFuzzer target `openvex`: every input through `ScanFuzzEntry.run(.openvex, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("openvex", data, size)
}
