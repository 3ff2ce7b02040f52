import FuzzSupport

/// libFuzzer target `go`: every input through `ScanFuzzEntry.run(.go, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("go", data, size)
}
