import ArgumentParser
import Foundation
import SQLiteStore
import HTTPAPI
import OCIModel
import RegistryStore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `berth backup` and `berth restore`: offline commands that work on data directories, not
// through the management API.
//
// A backup directory mirrors a data directory:
//     metadata.sqlite            a consistent copy made with SQLite's backup API
//     storage/blobs/<alg>/<xx>/<hex>
//     keys/…                     the key file sealing the signing keys kept in the metadata
//                                (keys/key-encryption.key), and any key files from before
//     bootstrap-owner-password   when the data directory has one
//     berth-backup.json          written last: the backup is complete

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Copy a registry's data directory, also while it is serving.",
        discussion: """
            Copies the keys, then the metadata (one consistent snapshot, taken with SQLite's backup API \
            while the server goes on writing), then every blob file that snapshot refers to. Blobs are \
            immutable and content-addressed, so a copied blob is the blob. Every image whose push was \
            acknowledged before the backup began is in the backup, unless it is deleted while the backup \
            runs (garbage collection may then remove its blobs before they are copied; such blobs are \
            listed). Uploads still in progress are not copied.
            """)

    @Option(help: "Data directory of the registry (the --data of berth serve).")
    var data: String

    @Option(help: "New directory to write the backup to (must not exist or be empty).")
    var out: String

    func run() async throws {
        try await runCLI {
            let database = data + "/metadata.sqlite"
            guard FileManager.default.fileExists(atPath: database) else {
                throw CLIError("\(data) holds no registry (no metadata.sqlite)")
            }
            try BackupFiles.makeEmptyDirectory(out)
            let keys = try BackupFiles.copyTree(data + "/keys", to: out + "/keys")
            let password = try BackupFiles.copyFile(data + "/bootstrap-owner-password", to: out + "/bootstrap-owner-password") != nil
            let blobs: [SQLiteBackup.FileBlob]
            do {
                blobs = try SQLiteBackup.snapshot(source: database, destination: out + "/metadata.sqlite")
            } catch {
                throw CLIError("cannot copy the metadata database \(database): \(error)")
            }
            // password hashes and sealed secrets: readable by the owner only
            chmod(out + "/metadata.sqlite", 0o600)
            var copied = 0, bytes: Int64 = 0
            var missing: [String] = []
            for blob in blobs {
                guard let relative = BackupFiles.blobPath(blob.digest) else {
                    throw CLIError("the metadata names an invalid digest \(blob.digest)")
                }
                if let size = try BackupFiles.copyFile(data + "/" + relative, to: out + "/" + relative) {
                    copied += 1
                    bytes += size
                } else {
                    missing.append(blob.digest)
                }
            }
            sync()
            let info = BackupInfo(format: 1, berthVersion: BerthVersion.string, createdAt: RFC3339.format(Date()),
                                  blobs: copied, blobBytes: bytes, missingBlobs: missing)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try BackupFiles.writeFile(out + "/" + BackupInfo.fileName, Data(try encoder.encode(info)))
            sync()
            Printer.write("Backed up \(data) to \(out): metadata, \(copied) blob files (\(bytes) bytes), \(keys) key files\(password ? ", bootstrap password file" : "")\n")
            if !missing.isEmpty {
                printWarning("\(missing.count) blob(s) were deleted (garbage collection) after the metadata was copied; images deleted while the backup ran may lack them: \(missing.joined(separator: " "))")
            }
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Make a new data directory from a backup (berth backup).",
        discussion: "The target must not exist or be empty, and no server may be using it. Start berth serve --data on it afterwards.")

    @Option(help: "Backup directory written by berth backup.")
    var from: String

    @Option(help: "New data directory (must not exist or be empty).")
    var data: String

    func run() async throws {
        try await runCLI {
            let infoPath = from + "/" + BackupInfo.fileName
            guard let infoData = FileManager.default.contents(atPath: infoPath),
                  let info = try? JSONDecoder().decode(BackupInfo.self, from: infoData) else {
                throw CLIError("\(from) is not a complete berth backup (no readable \(BackupInfo.fileName))")
            }
            guard info.format == 1 else { throw CLIError("\(from) has backup format \(info.format); this berth reads format 1") }
            let blobs: [SQLiteBackup.FileBlob]
            do {
                blobs = try SQLiteBackup.verify(path: from + "/metadata.sqlite")
            } catch {
                throw CLIError("cannot use the metadata of the backup \(from): \(error)")
            }
            try BackupFiles.makeEmptyDirectory(data, allowing: [DataDirectoryLock.fileName])
            let lock = try DataDirectoryLock(directory: data, purpose: "berth restore")
            defer { withExtendedLifetime(lock) {} }
            do {
                let keys = try BackupFiles.copyTree(from + "/keys", to: data + "/keys")
                _ = try BackupFiles.copyFile(from + "/bootstrap-owner-password", to: data + "/bootstrap-owner-password")
                var copied = 0
                var missing: [String] = []
                for blob in blobs {
                    guard let relative = BackupFiles.blobPath(blob.digest) else {
                        throw CLIError("the backup's metadata names an invalid digest \(blob.digest)")
                    }
                    guard let size = try BackupFiles.copyFile(from + "/" + relative, to: data + "/" + relative) else {
                        missing.append(blob.digest)
                        continue
                    }
                    guard size == blob.size else {
                        throw CLIError("the backup's blob \(blob.digest) has \(size) bytes, the metadata says \(blob.size)")
                    }
                    copied += 1
                }
                // The database last: a restore that stopped half-way has none, and is not taken
                // for a registry by mistake.
                _ = try BackupFiles.copyFile(from + "/metadata.sqlite", to: data + "/metadata.sqlite")
                sync()
                Printer.write("Restored \(from) (taken \(info.createdAt)) into \(data): metadata, \(copied) blob files, \(keys) key files\n")
                if !missing.isEmpty {
                    printWarning("\(missing.count) blob(s) the metadata refers to are not in the backup (deleted while it was taken): \(missing.joined(separator: " "))")
                }
            } catch {
                throw CLIError("restore into \(data) failed, remove it before trying again: \(error)")
            }
        }
    }
}

struct BackupInfo: Codable {
    static let fileName = "berth-backup.json"
    var format: Int
    var berthVersion: String
    var createdAt: String
    var blobs: Int
    var blobBytes: Int64
    var missingBlobs: [String]
}

/// File copies of backup and restore: new files only (never overwriting), fsynced.
enum BackupFiles {
    /// `storage/blobs/<alg>/<xx>/<hex>` of a digest string, or nil when it is not a plain digest.
    static func blobPath(_ digest: String) -> String? {
        let parts = digest.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].count >= 2,
              parts[0].utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }),
              parts[1].utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x30 && $0 <= 0x39) })
        else { return nil }
        return "storage/blobs/\(parts[0])/\(parts[1].prefix(2))/\(parts[1])"
    }

    /// Creates `path` (mode 0700) or accepts it when it exists and holds nothing but `allowing`.
    static func makeEmptyDirectory(_ path: String, allowing: Set<String> = []) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CLIError("\(path) exists and is not a directory") }
            let entries = try FileManager.default.contentsOfDirectory(atPath: path).filter { !allowing.contains($0) }
            guard entries.isEmpty else { throw CLIError("refusing to write into \(path): it is not empty") }
            return
        }
        try makeDirectories(path)
    }

    static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if mkdir(prefix, 0o700) != 0, errno != EEXIST {
                throw CLIError("cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Copies the regular files under `source` (when it exists), keeping their modes. Returns how many.
    static func copyTree(_ source: String, to destination: String) throws -> Int {
        guard let enumerator = FileManager.default.enumerator(atPath: source) else { return 0 }
        try makeDirectories(destination)
        var count = 0
        while let relative = enumerator.nextObject() as? String {
            var st = stat()
            guard lstat(source + "/" + relative, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                try makeDirectories(destination + "/" + relative)
            } else if (st.st_mode & S_IFMT) == S_IFREG {
                if try copyFile(source + "/" + relative, to: destination + "/" + relative) != nil { count += 1 }
            }
        }
        return count
    }

    /// Copies one file to a new file with the same mode (creating parent directories) and
    /// fsyncs it. Returns its size, or nil when `source` does not exist.
    @discardableResult
    static func copyFile(_ source: String, to destination: String) throws -> Int64? {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            if errno == ENOENT { return nil }
            throw CLIError("cannot read \(source): \(String(cString: strerror(errno)))")
        }
        defer { close(input) }
        var st = stat()
        guard fstat(input, &st) == 0 else { throw CLIError("cannot read \(source): \(String(cString: strerror(errno)))") }
        if let slash = destination.lastIndex(of: "/") { try makeDirectories(String(destination[..<slash])) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0o777)
        guard output >= 0 else { throw CLIError("cannot create \(destination): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("cannot read \(source): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            var done = 0
            while done < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + done, n - done) }
                if w < 0 {
                    if errno == EINTR { continue }
                    throw CLIError("cannot write \(destination): \(String(cString: strerror(errno)))")
                }
                done += w
            }
            total += Int64(n)
        }
        guard fsync(output) == 0 else { throw CLIError("cannot write \(destination): \(String(cString: strerror(errno)))") }
        return total
    }

    static func writeFile(_ path: String, _ data: Data) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let ok = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        guard ok, fsync(fd) == 0 else { throw CLIError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }
}
