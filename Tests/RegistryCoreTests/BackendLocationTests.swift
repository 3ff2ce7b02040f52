import Backends
import Testing

/// The `metadata` and `storage` settings of `berth serve`: what they accept, what they refuse,
/// and that a refusal never quotes a secret back.
@Suite struct BackendLocationTests {
    func metadataError(_ text: String) -> String? {
        do { _ = try MetadataLocation.parse(text); return nil } catch { return error.message }
    }

    func storageError(_ text: String) -> String? {
        do { _ = try StorageLocation.parse(text); return nil } catch { return error.message }
    }

    @Test func metadataForms() throws {
        #expect(try MetadataLocation.parse("sqlite") == .sqlite(path: nil))
        #expect(try MetadataLocation.parse("sqlite:///var/lib/berth/meta.sqlite") == .sqlite(path: "/var/lib/berth/meta.sqlite"))
        #expect(try MetadataLocation.parse("sqlite:///srv/my%20data/m.sqlite") == .sqlite(path: "/srv/my data/m.sqlite"))
        let url = "postgres://berth@db.example.com:5432/berth?sslmode=require"
        #expect(try MetadataLocation.parse(url) == .postgres(url: url, hasPassword: false))
        let withPassword = "postgres://berth:s3cr%40t@[::1]:5432/berth?sslmode=disable"
        #expect(try MetadataLocation.parse(withPassword) == .postgres(url: withPassword, hasPassword: true))
    }

    @Test func metadataRefusals() throws {
        #expect(metadataError("mysql://u@h/db")?.contains("unknown metadata scheme 'mysql'") == true)
        #expect(metadataError("postgres")?.contains("sqlite:///PATH") == true)
        #expect(metadataError("")?.contains("sqlite:///PATH") == true)
        #expect(metadataError("sqlite://host/path")?.contains("not a host") == true)
        #expect(metadataError("sqlite://[::1]/path")?.contains("not a host") == true)
        #expect(metadataError("sqlite:relative.sqlite")?.contains("absolute path") == true)
        #expect(metadataError("sqlite:///m.sqlite?mode=ro")?.contains("no query") == true)
        #expect(metadataError("postgres:///berth")?.contains("no host") == true)
        #expect(metadataError("postgres://u@h/db?sslmode=disable&sslmode=require")?.contains("'sslmode' twice") == true)
        #expect(metadataError("postgres://u@h/db?application_name=x")?.contains("unknown query key 'application_name'") == true)
        // A refusal never echoes the URL, so a password in it does not reach a log.
        let secret = "hunter2-very-secret"
        for text in ["postgres://u:\(secret)@h/db?x=1", "mysql://u:\(secret)@h/db", "postgres://u:\(secret)@/db", "%%\(secret)"] {
            let message = try #require(metadataError(text))
            #expect(!message.contains(secret))
        }
    }

    @Test func storageForms() throws {
        #expect(try StorageLocation.parse("filesystem") == .filesystem(root: nil))
        #expect(try StorageLocation.parse("file:///srv/blobs") == .filesystem(root: "/srv/blobs"))
        #expect(try StorageLocation.parse("s3://images?endpoint=https://s3.example.com&region=eu-west-1")
                == .s3(bucket: "images", prefix: "", endpoint: "https://s3.example.com", region: "eu-west-1"))
        #expect(try StorageLocation.parse("s3://images/team/a/?endpoint=http://127.0.0.1:7480/")
                == .s3(bucket: "images", prefix: "team/a", endpoint: "http://127.0.0.1:7480", region: nil))
        // Percent-encoded query values (an IPv6 endpoint) are decoded.
        #expect(try StorageLocation.parse("s3://images?endpoint=http%3A%2F%2F%5B%3A%3A1%5D%3A7480&region=r%2D1")
                == .s3(bucket: "images", prefix: "", endpoint: "http://[::1]:7480", region: "r-1"))
        #expect(try StorageLocation.parse("s3://images/a%20b") == .s3(bucket: "images", prefix: "a b", endpoint: nil, region: nil))
    }

    @Test func storageRefusals() throws {
        #expect(storageError("gs://bucket")?.contains("unknown storage scheme 'gs'") == true)
        #expect(storageError("s3")?.contains("s3://BUCKET") == true)
        #expect(storageError("s3:///prefix?endpoint=http://h")?.contains("no bucket") == true)
        #expect(storageError("s3://?endpoint=http://h")?.contains("no bucket") == true)
        #expect(storageError("s3://bu%63ket")?.contains("plain bucket name") == true)
        #expect(storageError("s3://[::1]/p")?.contains("plain bucket name") == true)
        #expect(storageError("s3://bucket:9000")?.contains("no port") == true)
        #expect(storageError("s3://bucket?endpoint=ftp://h")?.contains("http(s)://HOST") == true)
        #expect(storageError("s3://bucket?endpoint=h:9000")?.contains("http(s)://HOST") == true)
        #expect(storageError("s3://bucket?endpoint=http://")?.contains("http(s)://HOST") == true)
        #expect(storageError("s3://bucket?endpoint=http://h/path")?.contains("no credentials, path or query") == true)
        #expect(storageError("s3://bucket?endpoint=http://u:p@h")?.contains("no credentials, path or query") == true)
        #expect(storageError("s3://bucket?region=a&region=b")?.contains("'region' twice") == true)
        #expect(storageError("s3://bucket?region=")?.contains("'region' has no value") == true)
        #expect(storageError("s3://bucket?endpoint=http://h&secret_key=x")?.contains("unknown query key 'secret_key'") == true)
        #expect(storageError("file://host/srv")?.contains("not a host") == true)
        #expect(storageError("file:///")?.contains("absolute path") == true)
        let secret = "wJalrXUtnFEMI-secret"
        let message = try #require(storageError("s3://AKIDEXAMPLE:\(secret)@bucket?endpoint=http://h"))
        #expect(message.contains("must not hold access keys"))
        #expect(!message.contains(secret))
        #expect(storageError("s3://AKIDEXAMPLE@bucket")?.contains("must not hold access keys") == true)
    }

    /// Plain http to an S3 endpoint is accepted on loopback only, unless the operator opts in.
    @Test func plainHTTPToS3IsRefusedBeyondLoopback() {
        func problem(_ endpoint: String, allow: Bool = false) -> String? {
            S3BlobSettings(endpoint: endpoint, region: "us-east-1", bucket: "bucket", prefix: "", accessKey: "a", secretKey: "b",
                           allowInsecureHTTP: allow).problem()
        }
        for endpoint in ["http://s3.example.com", "http://10.0.0.5:7480", "http://127.0.0.1.example.com", "http://[::2]:7480"] {
            #expect(problem(endpoint)?.contains("s3-allow-insecure-http") == true, "\(endpoint)")
            #expect(problem(endpoint, allow: true) == nil, "\(endpoint)")
        }
        for endpoint in ["https://s3.example.com", "http://127.0.0.1:7480", "http://127.1.2.3", "http://localhost:9000", "http://[::1]:7480"] {
            #expect(problem(endpoint) == nil, "\(endpoint)")
        }
    }
}
