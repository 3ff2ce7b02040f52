import FuzzSupport

/// libFuzzer target `osv`: every input through `ScanFuzzEntry.run(.osv, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("osv", data, size)
}
