import FuzzSupport

/// libFuzzer target `rpm`: every input through `ScanFuzzEntry.run(.rpm, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("rpm", data, size)
}
