import FuzzSupport

/// libFuzzer target `java`: every input through `ScanFuzzEntry.run(.java, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("java", data, size)
}
