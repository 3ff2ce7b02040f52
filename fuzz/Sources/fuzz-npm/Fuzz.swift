import FuzzSupport

/// libFuzzer target `npm`: every input through `ScanFuzzEntry.run(.npm, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("npm", data, size)
}
