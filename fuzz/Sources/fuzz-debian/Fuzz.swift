import FuzzSupport

/// libFuzzer target `debian`: every input through `ScanFuzzEntry.run(.debian, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("debian", data, size)
}
