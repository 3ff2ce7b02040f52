import FuzzSupport

/// libFuzzer target `python`: every input through `ScanFuzzEntry.run(.python, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("python", data, size)
}
