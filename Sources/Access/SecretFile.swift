import Foundation

import Glibc

/// A file that holds a secret (the key-file, a password file, an S3 credentials file), read the one
/// careful way: symbolic links are followed (Kubernetes mounts secrets as links into `..data/`), the
/// file it names must be a regular file that neither its group nor others may read, and the checks
/// are made on the open file itself, so a file swapped between the check and the read is not read.
/// Errors name the file and what is wrong with it, never its contents.
public enum SecretFile {
    /// The file's bytes (at most `maxBytes`). `what` names the setting in errors (e.g. "key-file").
    public static func read(_ path: String, what: String, maxBytes: Int = 64 << 10) throws(KeyMaterialError) -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw KeyMaterialError("cannot read \(what) \(path): \(reason)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw KeyMaterialError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw KeyMaterialError("\(what) \(path) is not a regular file")
        }
        let mode = Int(info.st_mode & 0o7777)
        guard mode & 0o077 == 0 else {
            throw KeyMaterialError("\(what) \(path) may be read by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        guard Int(info.st_size) <= maxBytes else {
            throw KeyMaterialError("\(what) \(path) is larger than \(maxBytes) bytes")
        }
        var contents = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while contents.count <= maxBytes {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw KeyMaterialError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            contents.append(contentsOf: buffer[0..<n])
        }
        guard contents.count <= maxBytes else {
            throw KeyMaterialError("\(what) \(path) is larger than \(maxBytes) bytes")
        }
        return contents
    }
}
