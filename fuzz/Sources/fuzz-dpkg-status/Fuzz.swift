import FuzzSupport

/// libFuzzer target `dpkg-status`: every input through `ScanFuzzEntry.run(.dpkgStatus, input)`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzOne("dpkg-status", data, size)
}
