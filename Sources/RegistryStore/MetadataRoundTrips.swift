import Foundation

/// The statements a metadata backend sent to its database, its "round trips": PostgreSQL counts
/// each statement it sends on a connection (`BEGIN` and `COMMIT` included), SQLite each statement
/// it starts. `berth serve` exports the count as `berth_metadata_round_trips_total{backend}`; the
/// benchmark and the tests read it to show that the hot read path (a cached manifest GET) does not
/// reach the database.
public final class MetadataRoundTrips: @unchecked Sendable {
    /// The backend's name in the metric's `backend` label.
    public let backend: String
    private let lock = NSLock()
    private var count: Int64 = 0  // guarded by `lock`
    private var retryCount: Int64 = 0  // guarded by `lock`

    public init(backend: String) {
        self.backend = backend
    }

    /// One more statement sent.
    public func record() {
        lock.lock()
        count &+= 1
        lock.unlock()
    }

    /// Statements sent since the store was opened.
    public var total: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    /// One more transaction run again because the database rolled it back and asked for that (a
    /// deadlock it broke, a serialization failure); exported as
    /// `berth_metadata_transaction_retries_total{backend}`.
    public func recordRetry() {
        lock.lock()
        retryCount &+= 1
        lock.unlock()
    }

    /// Transactions run again since the store was opened.
    public var retries: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return retryCount
    }
}

/// A metadata backend that counts its round trips (both backends do).
public protocol CountsMetadataRoundTrips: AnyObject, Sendable {
    var roundTrips: MetadataRoundTrips { get }
}
