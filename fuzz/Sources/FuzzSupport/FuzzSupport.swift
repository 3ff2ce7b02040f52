import Dispatch
@_spi(Fuzzing) import Scanning

/// The body of every fuzz executable's `LLVMFuzzerTestOneInput` (libFuzzer's `main`, linked by
/// `--sanitize fuzzer`, calls it once per input): the input through `ScanFuzzEntry.run`.
/// `target` is a `ScanFuzzEntry.Target`'s raw value (the SPI type stays out of this signature).
public func fuzzOne(_ target: String, _ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = ScanFuzzEntry.Target(rawValue: target) else { fatalError("unknown fuzz target \(target)") }
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let done = Done()
    // The parsers are async only because layers stream; the harness waits for the task
    // (blocking this thread is fine: it is libFuzzer's, not an event loop's).
    Task.detached {
        _ = await ScanFuzzEntry.run(target, bytes)
        done.semaphore.signal()
    }
    done.semaphore.wait()
    return 0
}

private final class Done: @unchecked Sendable {
    let semaphore = DispatchSemaphore(value: 0)
}
