import CompressNIO
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a layer's bytes are compressed.
public enum LayerCompression: String, Sendable, Codable, Hashable {
    case none, gzip, zstd

    /// From the layer's media type, when it says (`…tar+gzip`, `…tar+zstd`, `…tar`); nil when
    /// it does not (Docker's `…rootfs.diff.tar.gzip` says gzip).
    public init?(mediaType: String) {
        let m = mediaType.lowercased()
        if m.hasSuffix("+gzip") || m.hasSuffix(".gzip") || m.hasSuffix(".tar.gz") { self = .gzip }
        else if m.hasSuffix("+zstd") || m.hasSuffix(".zstd") { self = .zstd }
        else if m.hasSuffix(".tar") || m.hasSuffix("+tar") { self = .none }
        else { return nil }
    }

    /// From the first bytes of the layer: the gzip and zstd magic numbers; anything else is
    /// taken for plain tar (whose parser then judges it).
    public init(magic bytes: some Collection<UInt8>) {
        let b = Array(bytes.prefix(4))
        if b.count >= 2, b[0] == 0x1F, b[1] == 0x8B { self = .gzip }
        else if b.count >= 4, b == [0x28, 0xB5, 0x2F, 0xFD] { self = .zstd }
        else { self = .none }
    }
}

/// Why a layer could not be read at all (as opposed to a partial index, which records problems).
public struct LayerWalkError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A streaming decompressor: fed compressed chunks, it hands out decompressed chunks.
protocol StreamDecompressor: AnyObject {
    /// Decompresses `input`, calling `output` with each piece (no piece larger than the working
    /// buffer). A throw is a problem with the data.
    func feed(_ input: inout ByteBuffer, output: (ByteBuffer) throws -> Void) throws
    /// The input has ended: throws when the compressed stream is incomplete.
    func finish() throws
}

/// Data problems of a compressed stream (kept apart from errors of the walker's own limits).
struct DecompressionProblem: Error, CustomStringConvertible {
    let description: String
}

/// Plain tar: passes chunks through.
final class PassthroughDecompressor: StreamDecompressor {
    func feed(_ input: inout ByteBuffer, output: (ByteBuffer) throws -> Void) throws {
        let chunk = input.readSlice(length: input.readableBytes)!
        if chunk.readableBytes > 0 { try output(chunk) }
    }
    func finish() throws {}
}

/// gzip through CompressNIO's zlib stream; concatenated members (pigz, `cat a.gz b.gz`) are
/// read one after the other.
final class GzipDecompressor: StreamDecompressor {
    private var zlib: ZlibDecompressor
    private var out: ByteBuffer
    private var sawInput = false
    private var justReset = false

    init(bufferSize: Int) throws {
        do { zlib = try ZlibDecompressor(algorithm: .gzip) } catch {
            throw DecompressionProblem(description: "gzip decompressor could not start: \(error)")
        }
        out = ByteBufferAllocator().buffer(capacity: bufferSize)
    }

    func feed(_ input: inout ByteBuffer, output: (ByteBuffer) throws -> Void) throws {
        if input.readableBytes > 0 { sawInput = true }
        while input.readableBytes > 0 {
            out.clear()
            let before = input.readableBytes
            var needsInput = false
            do {
                try zlib.inflate(from: &input, to: &out)
            } catch let e as CompressNIOError where e == .bufferOverflow {
                // The output buffer is full: hand it on and go round again.
            } catch let e as CompressNIOError where e == .inputBufferOverflow {
                needsInput = true
            } catch let e as CompressNIOError where e == .corruptData {
                throw DecompressionProblem(description: "corrupt gzip data")
            } catch {
                throw DecompressionProblem(description: "gzip: \(error)")
            }
            let produced = out.readableBytes
            if produced > 0 { try output(out) }
            if needsInput { break }
            if produced == 0 && input.readableBytes == before && justReset {
                // A new member that takes no input and gives no output: never loop on it.
                throw DecompressionProblem(description: "gzip stream makes no progress")
            }
            justReset = false
            if produced == 0 && input.readableBytes > 0 {
                // The member ended and bytes follow: another member, or trailing garbage.
                guard let b0 = input.getInteger(at: input.readerIndex, as: UInt8.self), b0 == 0x1F else {
                    if input.readableBytesView.allSatisfy({ $0 == 0 }) { input.moveReaderIndex(forwardBy: input.readableBytes); break }
                    throw DecompressionProblem(description: "data after the end of the gzip stream")
                }
                do { try zlib.reset() } catch { throw DecompressionProblem(description: "gzip: \(error)") }
                justReset = true
            }
        }
    }

    func finish() throws {
        guard sawInput else { throw DecompressionProblem(description: "empty gzip stream") }
        // Inflating nothing answers Z_STREAM_END after a complete member, Z_BUF_ERROR otherwise.
        var empty = ByteBufferAllocator().buffer(capacity: 16)
        out.clear()
        do { try zlib.inflate(from: &empty, to: &out) } catch let e as CompressNIOError where e == .inputBufferOverflow {
            throw DecompressionProblem(description: "truncated gzip stream")
        } catch {
            throw DecompressionProblem(description: "gzip: \(error)")
        }
    }
}

/// zstd through the system's `libzstd.so.1`, opened at run time: no build dependency, and a
/// clear per-layer error where it is absent.
final class ZstdDecompressor: StreamDecompressor {
    private let api: ZstdLibrary
    private let stream: OpaquePointer
    private var out: [UInt8]
    /// The last `ZSTD_decompressStream` answer: 0 when a frame was completely decoded.
    private var lastHint = 1
    private var sawInput = false

    init(library: ZstdLibrary?, bufferSize: Int) throws {
        guard let api = library else {
            throw LayerWalkError("zstd layer, but the system's zstd library (\(ZstdLibrary.libraryName)) could not be loaded")
        }
        guard let s = api.createDStream() else { throw DecompressionProblem(description: "zstd: out of memory") }
        self.api = api
        self.stream = s
        _ = api.initDStream(s)
        // Refuse frames asking for a window over 128 MiB (zstd's default limit, made explicit).
        _ = api.setParameter(s, 100 /* ZSTD_d_windowLogMax */, 27)
        out = [UInt8](repeating: 0, count: bufferSize)
    }

    deinit { _ = api.freeDStream(stream) }

    func feed(_ input: inout ByteBuffer, output: (ByteBuffer) throws -> Void) throws {
        guard input.readableBytes > 0 else { return }
        sawInput = true
        let bytes = input.readBytes(length: input.readableBytes)!
        var pos = 0
        // ZSTD_inBuffer and ZSTD_outBuffer: three machine words each { pointer, size, pos }.
        let inBuf = UnsafeMutableRawPointer.allocate(byteCount: 3 * MemoryLayout<Int>.stride, alignment: MemoryLayout<Int>.alignment)
        let outBuf = UnsafeMutableRawPointer.allocate(byteCount: 3 * MemoryLayout<Int>.stride, alignment: MemoryLayout<Int>.alignment)
        defer { inBuf.deallocate(); outBuf.deallocate() }
        let word = MemoryLayout<Int>.stride
        while true {
            var produced = 0
            let before = pos
            let hint: Int = bytes.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    inBuf.storeBytes(of: src.baseAddress, as: UnsafeRawPointer?.self)
                    inBuf.storeBytes(of: src.count, toByteOffset: word, as: Int.self)
                    inBuf.storeBytes(of: pos, toByteOffset: 2 * word, as: Int.self)
                    outBuf.storeBytes(of: dst.baseAddress, as: UnsafeMutableRawPointer?.self)
                    outBuf.storeBytes(of: dst.count, toByteOffset: word, as: Int.self)
                    outBuf.storeBytes(of: 0, toByteOffset: 2 * word, as: Int.self)
                    let r = api.decompressStream(stream, outBuf, inBuf)
                    pos = inBuf.load(fromByteOffset: 2 * word, as: Int.self)
                    produced = outBuf.load(fromByteOffset: 2 * word, as: Int.self)
                    return r
                }
            }
            if api.isError(hint) != 0 {
                var name = "error"
                if let p: UnsafePointer<CChar> = api.getErrorName(hint) { name = String(cString: p) }
                throw DecompressionProblem(description: "corrupt zstd data: \(name)")
            }
            lastHint = hint
            if produced > 0 {
                var chunk = ByteBufferAllocator().buffer(capacity: produced)
                chunk.writeBytes(out[0..<produced])
                try output(chunk)
            }
            // Done with this input once it is consumed and the output buffer was not filled.
            if pos >= bytes.count && produced < out.count { break }
            if produced == 0 && pos == before { throw DecompressionProblem(description: "zstd stream makes no progress") }
        }
    }

    func finish() throws {
        guard sawInput else { throw DecompressionProblem(description: "empty zstd stream") }
        if lastHint != 0 { throw DecompressionProblem(description: "truncated zstd stream") }
    }
}

/// The few libzstd functions the walker needs, looked up once with dlopen/dlsym.
final class ZstdLibrary: @unchecked Sendable {
    static let libraryName = "libzstd.so.1"
    typealias CreateDStream = @convention(c) () -> OpaquePointer?
    typealias FreeDStream = @convention(c) (OpaquePointer) -> Int
    typealias InitDStream = @convention(c) (OpaquePointer) -> Int
    typealias SetParameter = @convention(c) (OpaquePointer, Int32, Int32) -> Int
    typealias DecompressStream = @convention(c) (OpaquePointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int
    typealias IsError = @convention(c) (Int) -> UInt32
    typealias GetErrorName = @convention(c) (Int) -> UnsafePointer<CChar>?

    let createDStream: CreateDStream
    let freeDStream: FreeDStream
    let initDStream: InitDStream
    let setParameter: SetParameter
    let decompressStream: DecompressStream
    let isError: IsError
    let getErrorName: GetErrorName

    /// The loaded library, or nil when it (or one of its functions) is missing.
    static let shared: ZstdLibrary? = load(libraryName)

    static func load(_ name: String) -> ZstdLibrary? {
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { return nil }
        func symbol<T>(_ s: String, _: T.Type) -> T? {
            guard let p = dlsym(handle, s) else { return nil }
            return unsafeBitCast(p, to: T.self)
        }
        guard let c = symbol("ZSTD_createDStream", CreateDStream.self),
              let f = symbol("ZSTD_freeDStream", FreeDStream.self),
              let i = symbol("ZSTD_initDStream", InitDStream.self),
              let p = symbol("ZSTD_DCtx_setParameter", SetParameter.self),
              let d = symbol("ZSTD_decompressStream", DecompressStream.self),
              let e = symbol("ZSTD_isError", IsError.self),
              let n = symbol("ZSTD_getErrorName", GetErrorName.self) else {
            dlclose(handle)
            return nil
        }
        return ZstdLibrary(createDStream: c, freeDStream: f, initDStream: i, setParameter: p, decompressStream: d, isError: e, getErrorName: n)
    }

    private init(createDStream: CreateDStream, freeDStream: FreeDStream, initDStream: InitDStream, setParameter: SetParameter,
                 decompressStream: DecompressStream, isError: IsError, getErrorName: GetErrorName) {
        self.createDStream = createDStream; self.freeDStream = freeDStream; self.initDStream = initDStream
        self.setParameter = setParameter; self.decompressStream = decompressStream; self.isError = isError
        self.getErrorName = getErrorName
    }
}
