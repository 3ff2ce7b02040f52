import FuzzSupport

/// libFuzzer target `layer`: every input through `ScanFuzzEntry.run(.layer, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("layer", data, size)
}
