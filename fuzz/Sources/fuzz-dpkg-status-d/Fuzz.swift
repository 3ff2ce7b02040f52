import FuzzSupport

/// libFuzzer target `dpkg-status-d`: every input through `ScanFuzzEntry.run(.dpkgStatusD, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("dpkg-status-d", data, size)
}
