import FuzzSupport

/// libFuzzer target `alpine`: every input through `ScanFuzzEntry.run(.alpine, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("alpine", data, size)
}
