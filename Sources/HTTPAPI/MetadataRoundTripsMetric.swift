import NIOConcurrencyHelpers
import Prometheus
import RegistryStore

extension HTTPMetrics {
    /// Brings `berth_metadata_round_trips_total{backend}` up to the store's own count (read at
    /// scrape time: the backends count without depending on the metrics system).
    func mirror(_ roundTrips: MetadataRoundTrips) {
        mirror(roundTrips.total, key: roundTrips.backend, name: "berth_metadata_round_trips_total", backend: roundTrips.backend,
               help: "Statements the metadata store sent to its database")
        mirror(roundTrips.retries, key: "retries:" + roundTrips.backend, name: "berth_metadata_transaction_retries_total",
               backend: roundTrips.backend, help: "Transactions the metadata store ran again after its database rolled them back (deadlock, serialization failure)")
    }

    private func mirror(_ total: Int64, key: String, name: String, backend: String, help: String) {
        let added = roundTripsReported.withLockedValue { reported -> Int64 in
            let before = reported[key] ?? 0
            guard total > before else { return 0 }
            reported[key] = total
            return total - before
        }
        let counter = registry.makeCounter(name: name, labels: [("backend", backend)], help: help)
        counter.increment(by: added)
    }
}
